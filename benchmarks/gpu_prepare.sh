#!/bin/bash
# Prepare what a device lease needs, on this machine, before the lease (nothing is fetched there):
#
#     bash benchmarks/gpu_prepare.sh [OUT] [EXTRA_DATA ...]
#
# OUT (default gpu_carry, git-ignored through .git/info/exclude): hippocampus/ (a copy of ../shared/data/hippocampus,
# its LICENSE kept), whl/ (monai and nibabel wheels for the device's Python 3.12), cache/coldstart/ (the cold start's
# encoder of the tuning pool of every data folder copied: selection.novelty_share: auto trains it at a run's first
# selection, ~30 s each; carried, every run on the device reads it and the trigger's p equals this machine's).
# EXTRA_DATA: other data folders (a derived layout, e.g. /work/runs_inv/data) copied beside, by their folder's name
# one level up (runs_inv), with their encoder too. Then, in a device call: carry [OUT], run e.g.
# `END_S=520 SEEDS="50 51 52" bash benchmarks/gpu_run.sh` (its header: the settings, the new-site protocol)
# (2026-12-06: 44 runs of the CPU config, 3 rounds each, in 469 s on one H100). A call carries 64 MiB in all:
# OUT is 22 MB with the hippocampus alone, 53 MB with one derived layout beside it.
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-gpu_carry}
shift || true
mkdir -p "$OUT" .git/info
case "$OUT" in  # a folder inside the checkout travels with a device call only when carried: keep it out of git
  /*) ;;
  *) grep -qx "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >> .git/info/exclude ;;
esac
OUT=$(cd "$OUT" && pwd)
[ -d "$OUT/hippocampus" ] || cp -r ../shared/data/hippocampus "$OUT/"
folders=("$OUT/hippocampus")
for d in "$@"; do
  name=$(basename "$(dirname "$d")")
  [ -d "$OUT/$name" ] || cp -r "$d" "$OUT/$name"
  folders+=("$OUT/$name")
done
ls "$OUT"/whl/monai-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d "$OUT/whl" monai==1.6.1 nibabel==5.4.2
PY=${PYTHON:-.venv/bin/python}
for d in "${folders[@]}"; do
  MEDAL_CACHE_DIR="$OUT/cache" PYTHONPATH="$PWD:$PWD/benchmarks" "$PY" - "$d" <<'PYEOF'
import json, sys
from medal.data import load_dataset
import novelty_trigger
pool = set(json.load(open("benchmarks/hippocampus_tuning_split.json"))["pool"])
ds = load_dataset(sys.argv[1])
cases = [c for c in ds.cases if c.case_id in pool]
z = novelty_trigger.embed(ds, cases)[0]
print(f"{sys.argv[1]}: encoder of {len(cases)} tuning-pool cases cached ({z.shape[0]} slices)")
PYEOF
done
du -sh "$OUT"
