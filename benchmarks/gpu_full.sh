#!/bin/bash
# The full label-efficiency config on one GPU machine, within a wall-clock budget:
#
#     bash benchmarks/gpu_full.sh OUT_DIR [MINUTES] [DATA]
#
# 1. benchmarks/training_speed.py: fp32 vs bf16 training steps/s of both configs' models on this device;
# 2. the 100% line (the full config on every pool label) in the background;
# 3. benchmarks/label_efficiency.py --config configs/label_efficiency_full.yaml --split final, every (row, seed)
#    side by side (WORKERS, default: cores - 1), --deadline so that it reports the rounds every run finished
#    within MINUTES (default 8) of the start;
# 4. OUT_DIR: the logs, results.csv, simulation.json, every run's rounds.jsonl, the results JSON.
# Re-report elsewhere: label_efficiency.py --config ... --split final --from-results DIR --full-dice X.
# Where monai and nibabel are missing (a bare GPU image), wheels in $WHEELS (default gpu_carry/whl) are installed
# into /tmp/site first. Environment: CFG (another config), TAG (results name suffix, default gpu_full), WORKERS,
# SPEED_ARGS (e.g. --quick). The 100% line is given MINUTES + 1 minute.
# Wheels for a machine without network (its Python 3.12 here): python3 -m pip download --no-deps --only-binary=:all:
#   --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d gpu_carry/whl monai==1.6.1 nibabel==5.4.2
# First used on an H200 on 2026-12-04 (by hand; RESULTS.md): 15 workers, ~150 fp32 steps/s over the machine.
set -u
OUT=${1:?usage: gpu_full.sh OUT_DIR [MINUTES] [DATA]}
MINUTES=${2:-8}
DATA=${3:-../shared/data/hippocampus}
CFG=${CFG:-configs/label_efficiency_full.yaml}
TAG=${TAG:-gpu_full}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
WHEELS=${WHEELS:-gpu_carry/whl}
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$OUT"
T0=$(date +%s)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "gpu_full: monai/nibabel missing and no wheels in $WHEELS" >&2; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/env.txt"
python3 benchmarks/training_speed.py --data "$DATA" ${SPEED_ARGS:-} > "$OUT/training_speed.txt" 2>&1
tail -3 "$OUT/training_speed.txt"
timeout $(( MINUTES * 60 + 60 )) python3 benchmarks/label_efficiency.py --config "$CFG" --split final \
  --data "$DATA" --full-dice-only > "$OUT/full_dice.txt" 2>&1 &
FULL=$!
LEFT=$(python3 -c "print(max(0.0, $MINUTES - ($(date +%s) - $T0) / 60))")
python3 benchmarks/label_efficiency.py --config "$CFG" --split final --workers "$WORKERS" --out "$OUT/sim" \
  --data "$DATA" --deadline "$LEFT" --full-dice 0 --tag "$TAG" > "$OUT/label_efficiency.txt" 2>&1
wait $FULL
X=$(awk '/^full_dice:/{print $2}' "$OUT/full_dice.txt")
if [ -n "$X" ]; then  # the report again, with the 100% line measured beside the simulation
  python3 benchmarks/label_efficiency.py --config "$CFG" --split final --from-results "$OUT/sim" --data "$DATA" \
    --full-dice "$X" --tag "$TAG" > "$OUT/label_efficiency_report.txt" 2>&1
fi
cp benchmarks/results/label_efficiency_"$TAG".json "$OUT/" 2>/dev/null
for f in "$OUT"/sim/*/seed_*/rounds.jsonl; do cat "$f"; done > "$OUT/rounds.jsonl" 2>/dev/null
cp "$OUT/sim/results.csv" "$OUT/sim/simulation.json" "$OUT/" 2>/dev/null
tail -2 "$OUT/full_dice.txt"; tail -3 "$OUT/label_efficiency.txt"
echo "gpu_full: $(wc -l < "$OUT/rounds.jsonl") round rows; $(( $(date +%s) - T0 )) s"
