#!/usr/bin/env bash
# The held-out soundtracks benchmark of docs/experiments.md: stages 01-05 on full-length game soundtracks
# (../shared/DATA.md), soundtrack-disjoint splits, chunked-gru distilled from the teacher and the
# same student without the teacher, every method scored in one run of stage 05 on the same
# held-out test triplets.
#
#   benchmarks/heldout_soundtracks.sh                       # the first split (conf/experiment/soundtracks.yaml)
#   benchmarks/heldout_soundtracks.sh soundtracks_rotated   # 4 other test soundtracks (conf/experiment/soundtracks_rotated.yaml)
#
# Needs the Debian soundtrack packages (as root): the twelve of ../shared/DATA.md
#   apt-get install -y --no-install-recommends wesnoth-1.16-music fretsonfire-songs-muldjord \
#     fretsonfire-songs-sectoid supertux-data hedgewars-data naev-data freedroidrpg-data \
#     widelands-data flare-game megaglest-data openclonk-data extremetuxracer-data
# and ten more, pinned to training/validation by conf/dataset/soundtracks.yaml (split_overrides):
#   apt-get install -y --no-install-recommends warzone2100-music marsshooter-data unknown-horizons \
#     fillets-ng-data xmoto-data lordsawar-data lincity-ng-data frozen-bubble-data lugaru-data warmux-data
# and MECOMP's model (mecomp.onnx, else downloaded). Writes data/<experiment>/ and
# results/<experiment>/ (benchmark.md and segmentation/summary.md are the tables of docs/experiments.md).
# The rotated split reuses the first split's per-track caches (features, teacher targets).
# About 1 h per split on 2 CPU cores; set SEGMENTATION=1 to run the segmentation stages too.
set -euo pipefail
cd "$(dirname "$0")/.."
experiment="${1:-soundtracks}"
python 01_download_fma.py experiment="$experiment"
python 02_extract_features.py experiment="$experiment"
python 02_teacher_targets.py experiment="$experiment"
python 03_build_triplets.py experiment="$experiment"
python 04_train.py --multirun experiment="$experiment" window=chunked head=gru loss=distill,combined
python 05_evaluate.py experiment="$experiment"
if [ "${SEGMENTATION:-0}" = 1 ]; then
  python 03_build_medleys.py experiment="$experiment"            # medleys of full-length songs
  python 04_train_segmentation.py experiment="$experiment"       # SSM-Net on them
  python 05_evaluate_segmentation.py experiment="$experiment"    # SSM-Net, Foote and Laplacian on the test medleys
fi
