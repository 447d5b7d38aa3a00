"""One function per dvc.yaml stage, from declared input paths and the stage's own config section to
declared outputs. The numbered scripts are thin Hydra entry points that call exactly one of them;
the library under ``songfeel`` never imports this package (an import-linter contract in
``pyproject.toml`` checks it).

============================  =========================  =========================================
dvc.yaml stage                script                     function
============================  =========================  =========================================
download                      01_download_fma.py         :func:`songfeel.stages.download.download`
features                      02_extract_features.py     :func:`songfeel.stages.features.extract_features`
teacher                       02_teacher_targets.py      :func:`songfeel.stages.teacher.teacher_targets`
triplets                      03_build_triplets.py       :func:`songfeel.stages.triplets.build_triplets`
medleys                       03_build_medleys.py        :func:`songfeel.stages.segmentation.build_medleys`
train                         04_train.py                :func:`songfeel.stages.train.train`
train_segmentation            04_train_segmentation.py   :func:`songfeel.stages.segmentation.train_segmentation`
evaluate                      05_evaluate.py             :func:`songfeel.stages.evaluate.evaluate`
evaluate_segmentation         05_evaluate_segmentation.py  :func:`songfeel.stages.segmentation.evaluate_segmentation`
export                        06_export.py               :func:`songfeel.stages.export.export`
============================  =========================  =========================================
"""
