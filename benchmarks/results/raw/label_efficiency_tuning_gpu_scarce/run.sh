#!/bin/bash
# One device call (2026-12-04, issue 11): GPU test, fp32 vs bf16 throughput, then the scarce-label screen of the
# full config's model on the tuning split (300 s start, 2 rounds of 600 s, seeds 0-4, random/fg_random/default),
# side by side, stopped by --deadline so the whole call ends before END_S seconds.
set -u
T0=$(date +%s)
END_S=${END_S:-540}
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu_carry/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch, monai, nibabel, numpy; print(torch.__version__, monai.__version__, nibabel.__version__, numpy.__version__, torch.cuda.is_available())") > $OUT/env.txt 2>&1
cat $OUT/env.txt
python3 -m pytest tests/uncertainty/test_mc.py -q -m gpu -p no:cacheprovider > $OUT/gpu_test.txt 2>&1
tail -2 $OUT/gpu_test.txt; echo "t=$(( $(date +%s) - T0 ))s"
python3 benchmarks/training_speed.py --data gpu_carry/hippocampus --steps 40 > $OUT/training_speed.txt 2>&1
tail -8 $OUT/training_speed.txt; echo "t=$(( $(date +%s) - T0 ))s"
R=$(awk '/^bf16_over_fp32_steps_per_s:/{print $2}' $OUT/training_speed.txt)
CFG=configs/label_efficiency_full.yaml
if python3 -c "import sys; sys.exit(0 if float('${R:-0}') >= 1.2 else 1)"; then
  sed 's/^  semi_supervised: none.*/&\n  precision: bf16/' $CFG > configs/_gpu_bf16.yaml; CFG=configs/_gpu_bf16.yaml
fi
echo "config: $CFG (bf16/fp32 = ${R:-?})" | tee $OUT/precision.txt
grep -n precision $CFG
LEFT=$(python3 -c "print(max(0.5, ($END_S - ($(date +%s) - $T0)) / 60))")
python3 benchmarks/label_efficiency.py --config $CFG --split tuning --seeds 0 1 2 3 4 --rounds 2 \
  --initial-budget 300 --budget 600 --strategies random fg_random default --workers 15 --out /tmp/sim \
  --data gpu_carry/hippocampus --deadline $LEFT --full-dice 0.0 --tag gpu_scarce > $OUT/sim_log.txt 2>&1 &
SPID=$!
while kill -0 $SPID 2>/dev/null; do
  sleep 5
  if [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ]; then
    echo "t=$(( $(date +%s) - T0 ))s rounds logged: $(cat /tmp/sim/*/seed_*/rounds.jsonl 2>/dev/null | wc -l)"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  fi
  # the whole call must end within END_S + 40 s whatever a round does
  if [ $(( $(date +%s) - T0 )) -gt $(( END_S + 40 )) ]; then pkill -KILL -f "label_efficiency|multiprocessing"; echo "killed at t=$(( $(date +%s) - T0 ))s"; fi
done
for f in /tmp/sim/*/seed_*/rounds.jsonl; do cat "$f"; done > $OUT/rounds.jsonl 2>/dev/null
cp /tmp/sim/simulation.json /tmp/sim/results.csv $OUT/ 2>/dev/null
for f in /tmp/sim/*/seed_*/round_*/train_s.json; do echo "$f $(cat $f)"; done > $OUT/train_s.txt 2>/dev/null
cp benchmarks/results/label_efficiency_*gpu_scarce*.json $OUT/ 2>/dev/null
tail -12 $OUT/sim_log.txt
echo "rows: $(wc -l < $OUT/rounds.jsonl); total $(( $(date +%s) - T0 ))s"
