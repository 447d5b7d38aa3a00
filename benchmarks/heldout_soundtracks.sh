#!/usr/bin/env bash
# The held-out soundtracks benchmark of the README: stages 01-05 on full-length game soundtracks
# (../shared/DATA.md), soundtrack-disjoint splits, the default window x head sweep, every variant
# and the three baselines scored on the same held-out test triplets.
#
# Needs the Debian soundtrack packages (as root): the twelve of ../shared/DATA.md
#   apt-get install -y --no-install-recommends wesnoth-1.16-music fretsonfire-songs-muldjord \
#     fretsonfire-songs-sectoid supertux-data hedgewars-data naev-data freedroidrpg-data \
#     widelands-data flare-game megaglest-data openclonk-data extremetuxracer-data
# and ten more, pinned to training/validation by conf/dataset/soundtracks.yaml (split_overrides):
#   apt-get install -y --no-install-recommends warzone2100-music marsshooter-data unknown-horizons \
#     fillets-ng-data xmoto-data lordsawar-data lincity-ng-data frozen-bubble-data lugaru-data warmux-data
# and MECOMP's model (eval.mecomp_onnx, else downloaded). Writes data/soundtracks/ and
# results/soundtracks/ (benchmark.md and structure_analysis/summary.md are the README's tables).
# About 2 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
python 01_download_fma.py experiment=soundtracks
python 02_extract_features.py experiment=soundtracks
python 03_build_triplets.py experiment=soundtracks
python 03_build_triplets.py experiment=soundtracks task=structure   # medleys of full-length songs
python 04_train.py --multirun experiment=soundtracks window=chunked,sliding head=gru,attention
python 04_train.py experiment=soundtracks task=structure            # SSM-Net on them
python 05_evaluate.py experiment=soundtracks
