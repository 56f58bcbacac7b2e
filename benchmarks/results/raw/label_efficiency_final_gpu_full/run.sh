#!/bin/bash
# One device call: the full label-efficiency config on the GPU, time-boxed (DEADLINE s for the simulation).
set -u
T0=$(date +%s)
CFG=${CFG:-configs/label_efficiency_full.yaml}
DEADLINE=${DEADLINE:-480}
WORKERS=${WORKERS:-15}
SIM=${SIM:-/tmp/sim_full}
if [ -d gpu_carry/whl ] && ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu_carry/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch, monai, nibabel, numpy; print(torch.__version__, monai.__version__, nibabel.__version__, numpy.__version__, torch.cuda.is_available())") > $OUT/env.txt 2>&1
cat $OUT/env.txt
python3 -m pytest tests/uncertainty/test_mc.py -q -m gpu -p no:cacheprovider > $OUT/gpu_test.txt 2>&1 &
python3 gpu_carry/full_dice.py $CFG gpu_carry/hippocampus > $OUT/full_dice.txt 2>&1 &
S=$(command -v setsid || true)
$S python3 benchmarks/label_efficiency.py --config $CFG --split final --workers $WORKERS --out $SIM \
  --data gpu_carry/hippocampus --full-dice 0.0 --tag gpu > $OUT/sim_log.txt 2>&1 &
SPID=$!
while kill -0 $SPID 2>/dev/null && [ $(( $(date +%s) - T0 )) -lt $DEADLINE ]; do
  sleep 5
  if [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ]; then
    echo "t=$(( $(date +%s) - T0 ))s rounds logged: $(cat $SIM/*/seed_*/rounds.jsonl 2>/dev/null | wc -l)"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  fi
done
(kill -KILL -- -$SPID 2>/dev/null || { kill -0 $SPID 2>/dev/null && pkill -KILL -f "multiprocessing|label_efficiency"; }) && echo "simulation stopped at the deadline (t=$(( $(date +%s) - T0 ))s)"
wait
for f in $SIM/*/seed_*/rounds.jsonl; do cat "$f"; done > $OUT/rounds.jsonl 2>/dev/null
cp $SIM/simulation.json $SIM/results.csv $OUT/ 2>/dev/null
for f in $SIM/*/seed_*/round_*/train_s.json; do echo "$f $(cat $f)"; done > $OUT/train_s.txt 2>/dev/null
cat $OUT/gpu_test.txt | tail -3; cat $OUT/full_dice.txt | tail -2; tail -5 $OUT/sim_log.txt
echo "rows: $(wc -l < $OUT/rounds.jsonl); total $(( $(date +%s) - T0 ))s"
