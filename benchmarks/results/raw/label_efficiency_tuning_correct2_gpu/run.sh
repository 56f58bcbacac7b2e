#!/bin/bash
# One device call (2026-12-04, issue 11): annotation by correction (costs.annotation: correct), a screen on the
# tuning split: CPU config's model, 300 s random start (drawn), 2 time-boxed rounds of 600 s (reserve 8),
# seeds 0-4, random / fg_random / default side by side (15 runs), stopped by --deadline before END_S seconds.
set -u
T0=$(date +%s)
END_S=${END_S:-420}
SPLIT=${SPLIT:-tuning}
CFG=${CFG:-configs/label_efficiency_cpu.yaml}
TIMED=${TIMED---timed 8}
FULL=${FULL:-0.85}
NAME=${NAME:-label_efficiency_${SPLIT}_correct_gpu}
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu_carry/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch, monai, nibabel, numpy; print(torch.__version__, monai.__version__, nibabel.__version__, numpy.__version__, torch.cuda.is_available())") > $OUT/env.txt 2>&1
cat $OUT/env.txt
LEFT=$(python3 -c "print(max(0.5, ($END_S - ($(date +%s) - $T0)) / 60))")
python3 benchmarks/label_efficiency.py --config $CFG --split $SPLIT --seeds 0 1 2 3 4 --rounds 2 --initial-budget 300 --budget 600 \
  $TIMED --annotation correct --strategies random fg_random default --workers 15 --out /tmp/sim \
  --data gpu_carry/hippocampus --deadline $LEFT --full-dice $FULL --results-name $NAME \
  > $OUT/sim_log.txt 2>&1 &
SPID=$!
while kill -0 $SPID 2>/dev/null; do
  sleep 5
  for f in /tmp/sim/*/seed_*/rounds.jsonl; do cat "$f"; done > $OUT/rounds.jsonl 2>/dev/null  # kept if the lease ends
  if [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ]; then
    echo "t=$(( $(date +%s) - T0 ))s rounds logged: $(cat /tmp/sim/*/seed_*/rounds.jsonl 2>/dev/null | wc -l)"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  fi
  if [ $(( $(date +%s) - T0 )) -gt $(( END_S + 40 )) ]; then pkill -KILL -f "label_efficiency|multiprocessing"; echo "killed at t=$(( $(date +%s) - T0 ))s"; fi
done
for f in /tmp/sim/*/seed_*/rounds.jsonl; do cat "$f"; done > $OUT/rounds.jsonl 2>/dev/null
cp /tmp/sim/simulation.json /tmp/sim/results.csv $OUT/ 2>/dev/null
cp benchmarks/results/$NAME.json $OUT/ 2>/dev/null
# the finished tasks of seed 0's rounds (predicted vs charged per task; the chosen units)
tar czf $OUT/seed0_tasks.tgz -C /tmp/sim $(cd /tmp/sim && ls -d */seed_0/round_00[01]/tasks.json */seed_0/round_00[01]/annotation_log.jsonl 2>/dev/null) 2>/dev/null
sed -n '/^## Label efficiency/,$p' benchmarks/RESULTS.md | tail -30 > $OUT/results_entry.md
tail -14 $OUT/sim_log.txt
echo "rows: $(wc -l < $OUT/rounds.jsonl); total $(( $(date +%s) - T0 ))s"
