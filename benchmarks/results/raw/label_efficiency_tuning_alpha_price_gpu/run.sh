#!/bin/bash
# One device call (2026-12-06, issue 11): the price of a fire of the novelty trigger at p in [0.05, 0.1) on the
# ordinary pool. Tuning split, CPU config's model, 300 s random start, 2 time-boxed rounds of 600 s (reserve 8),
# rows default (selection.novelty_alpha 0.1) and default_alpha05 (0.05), the 22 seeds of medal's own starts
# (1000-1299) whose first p lies in [0.05, 0.1), in seed order; 16 runs side by side; --deadline ends the call
# before END_S seconds. RESUME=1: the same command with --resume (completes the runs a deadline stopped).
# Needs gpu_carry/ (carried): hippocampus/ (the data), whl/ (monai, nibabel for Python 3.12), cache/ (the cold
# start's encoder of the tuning pool, trained here on the CPU: the trigger's embedding, the same on every machine).
set -u
T0=$(date +%s)
END_S=${END_S:-500}
NAME=${NAME:-label_efficiency_tuning_alpha_price_gpu}
SEEDS=${SEEDS:-1000 1001 1007 1016 1026 1042 1045 1066 1071 1093 1095 1106 1107 1116 1120 1142 1166 1173 1194 1221 1231 1253}
RESUME=${RESUME:-}
STRATEGIES=${STRATEGIES:-default default_alpha05}  # the rows (2026-12-06 11:04 UTC: the default's)
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu_carry/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MEDAL_CACHE_DIR=$PWD/gpu_carry/cache
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch, monai, nibabel, numpy; print(torch.__version__, monai.__version__, nibabel.__version__, numpy.__version__, torch.cuda.is_available())") >> $OUT/env.txt 2>&1
cat $OUT/env.txt
LEFT=$(python3 -c "print(max(0.5, ($END_S - ($(date +%s) - $T0)) / 60))")
python3 benchmarks/label_efficiency.py --split tuning --seeds $SEEDS --rounds 2 --initial-budget 300 --budget 600 \
  --timed 8 --strategies $STRATEGIES --workers 16 --out /tmp/sim ${RESUME:+--resume} \
  --data gpu_carry/hippocampus --deadline $LEFT --full-dice 0.85 --results-name $NAME \
  >> $OUT/sim_log.txt 2>&1 &
SPID=$!
collect() {
  for f in /tmp/sim/*/seed_*/rounds.jsonl; do cat "$f"; done > $OUT/rounds.jsonl 2>/dev/null
  python3 - > $OUT/novelty.json 2>/dev/null <<'PY'
import json, glob
out = {}
for f in sorted(glob.glob("/tmp/sim/*/seed_*/round_00[012]/tasks.json")):
    try:
        out[f[len("/tmp/sim/"):]] = json.load(open(f)).get("novelty")
    except Exception as e:
        out[f] = repr(e)
print(json.dumps(out, indent=1))
PY
}
while kill -0 $SPID 2>/dev/null; do
  sleep 5
  collect
  if [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ]; then
    echo "t=$(( $(date +%s) - T0 ))s rounds logged: $(cat /tmp/sim/*/seed_*/rounds.jsonl 2>/dev/null | wc -l)"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime
  fi
  if [ $(( $(date +%s) - T0 )) -gt $(( END_S + 40 )) ]; then pkill -KILL -f "benchmarks/label_efficiency.py|multiprocessing"; echo "killed at t=$(( $(date +%s) - T0 ))s"; fi
done
collect
cp /tmp/sim/simulation.json /tmp/sim/results.csv $OUT/ 2>/dev/null
cp benchmarks/results/$NAME.json $OUT/ 2>/dev/null
sed -n '/^## Label efficiency/,$p' benchmarks/RESULTS.md | tail -30 > $OUT/results_entry.md
tail -14 $OUT/sim_log.txt
echo "rows: $(wc -l < $OUT/rounds.jsonl); total $(( $(date +%s) - T0 ))s"
