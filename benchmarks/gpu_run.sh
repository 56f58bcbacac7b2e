#!/bin/bash
# Rows of the CPU config (`label_efficiency_cpu.yaml`) side by side on a leased device, in one call:
#
#     SEEDS="50 51 52" bash benchmarks/gpu_run.sh
#
# Run `bash benchmarks/gpu_prepare.sh [gpu_carry] [DERIVED_DATA ...]` here first, then call the device with
# carry ["gpu_carry"]. Every setting is an environment variable:
#   SEEDS (required), STRATEGIES (rows; default "random fg_random default"), NAME (results name; default
#   label_efficiency_gpu), SPLIT (tuning | final; default tuning), ROUNDS (2), INITIAL_BUDGET (300), BUDGET (600),
#   TIMED (8), FULL_DICE (0.85), WORKERS (16), END_S (seconds the call may take, default 500: --deadline stops the
#   runs between rounds before it; a round still training 40 s past END_S is killed, its earlier rounds kept), RESUME=1 (complete the runs a deadline stopped; same command otherwise),
#   CARRY (gpu_carry), DATA (folder under CARRY; default hippocampus),
#   GROUP_FILE / INITIAL_GROUPS (the new-site protocol: GROUP_FILE=sites.json, a file in DATA, and INITIAL_GROUPS="A B").
# The new-site protocol (issue 11): `python benchmarks/derive_sites.py /work/runs_inv/data --site-c inverted`,
# `bash benchmarks/gpu_prepare.sh gpu_carry /work/runs_inv/data` (53 MB: within a call's 64 MiB), then
#     DATA=runs_inv GROUP_FILE=sites.json INITIAL_GROUPS="A B" FULL_DICE=0.80 SEEDS="..." bash benchmarks/gpu_run.sh
# What comes back under $OUT: env.txt, sim_log.txt, rounds.jsonl (every round logged, also of stopped runs),
# novelty.json (the trigger per run and round), simulation.json, results.csv, NAME.json, results_entry.md.
# Measured 2026-12-06 with the same loop (its first form, benchmarks/results/raw/label_efficiency_tuning_alpha_price_gpu/
# run.sh): 44 runs of 3 rounds in 469 s on one H100, 16 side by side. Without $OUT (a check on this machine) the
# files go to /tmp/gpu_run_out (and SIM=/tmp/... a fresh folder). Checked here 2026-12-06: the ordinary and the
# new-site command lines, a missing groups file (exit 2), the kill past END_S (only the run's own process group).
set -u
T0=$(date +%s)
: "${SEEDS:?SEEDS is required, e.g. SEEDS=\"50 51 52\"}"
END_S=${END_S:-500}
NAME=${NAME:-label_efficiency_gpu}
STRATEGIES=${STRATEGIES:-random fg_random default}
SPLIT=${SPLIT:-tuning}
ROUNDS=${ROUNDS:-2}
INITIAL_BUDGET=${INITIAL_BUDGET:-300}
BUDGET=${BUDGET:-600}
TIMED=${TIMED:-8}
FULL_DICE=${FULL_DICE:-0.85}
WORKERS=${WORKERS:-16}
RESUME=${RESUME:-}
CARRY=${CARRY:-gpu_carry}
DATA=$CARRY/${DATA:-hippocampus}
GROUP_FILE=${GROUP_FILE:-}
INITIAL_GROUPS=${INITIAL_GROUPS:-}
SIM=${SIM:-/tmp/sim}
OUT=${OUT:-/tmp/gpu_run_out}
mkdir -p "$OUT"
[ -d "$DATA" ] || { echo "gpu_run: no data folder $DATA (run benchmarks/gpu_prepare.sh and carry $CARRY)" >&2; exit 2; }
if [ -n "$GROUP_FILE" ] && [ ! -f "$DATA/$GROUP_FILE" ]; then echo "gpu_run: no groups file $DATA/$GROUP_FILE" >&2; exit 2; fi
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  ls "$CARRY"/whl/*.whl >/dev/null 2>&1 || { echo "gpu_run: monai/nibabel missing and no wheels in $CARRY/whl" >&2; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
case "$CARRY" in /*) CACHE=$CARRY/cache ;; *) CACHE=$PWD/$CARRY/cache ;; esac
export PYTHONUNBUFFERED=1 MEDAL_CACHE_DIR=$CACHE
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
  python3 -c "import torch, monai, nibabel, numpy; print(torch.__version__, monai.__version__, nibabel.__version__, numpy.__version__, torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
args=(--split "$SPLIT" --seeds $SEEDS --rounds "$ROUNDS" --initial-budget "$INITIAL_BUDGET" --budget "$BUDGET"
      --timed "$TIMED" --strategies $STRATEGIES --workers "$WORKERS" --out "$SIM" --data "$DATA"
      --full-dice "$FULL_DICE" --results-name "$NAME")
[ -n "$RESUME" ] && args+=(--resume)
[ -n "$GROUP_FILE" ] && args+=(--groups "$DATA/$GROUP_FILE")
[ -n "$INITIAL_GROUPS" ] && args+=(--initial-groups $INITIAL_GROUPS)
LEFT=$(python3 -c "print(max(0.5, ($END_S - ($(date +%s) - $T0)) / 60))")
echo "gpu_run: python3 benchmarks/label_efficiency.py ${args[*]} --deadline $LEFT" | tee "$OUT/sim_log.txt"
set -m  # the run in its own process group: a kill past END_S reaches its workers and nothing else
python3 benchmarks/label_efficiency.py "${args[@]}" --deadline "$LEFT" >> "$OUT/sim_log.txt" 2>&1 &
SPID=$!
set +m
collect() {
  for f in "$SIM"/*/seed_*/rounds.jsonl; do [ -f "$f" ] && cat "$f"; done > "$OUT/rounds.jsonl"
  SIM="$SIM" python3 - > "$OUT/novelty.json" 2>/dev/null <<'PY'
import glob, json, os
sim = os.environ["SIM"].rstrip("/") + "/"
out = {}
for f in sorted(glob.glob(sim + "*/seed_*/round_*/tasks.json")):
    try:
        out[f[len(sim):]] = json.load(open(f)).get("novelty")
    except (OSError, ValueError) as e:
        out[f[len(sim):]] = repr(e)
print(json.dumps(out, indent=1))
PY
}
while kill -0 $SPID 2>/dev/null; do
  sleep 5
  collect
  if [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ]; then
    echo "t=$(( $(date +%s) - T0 ))s rounds logged: $(wc -l < "$OUT/rounds.jsonl")"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  fi
  if [ $(( $(date +%s) - T0 )) -gt $(( END_S + 40 )) ]; then
    kill -KILL -- -$SPID 2>/dev/null; echo "gpu_run: killed at t=$(( $(date +%s) - T0 ))s"
  fi
done
wait $SPID; RC=$?
collect
cp "$SIM/simulation.json" "$SIM/results.csv" "$OUT/" 2>/dev/null
cp "benchmarks/results/$NAME.json" "$OUT/" 2>/dev/null
sed -n '/^## Label efficiency/,$p' benchmarks/RESULTS.md | tail -30 > "$OUT/results_entry.md"
tail -14 "$OUT/sim_log.txt"
echo "gpu_run: exit $RC; $(wc -l < "$OUT/rounds.jsonl") round rows; $(( $(date +%s) - T0 )) s"
exit $RC
