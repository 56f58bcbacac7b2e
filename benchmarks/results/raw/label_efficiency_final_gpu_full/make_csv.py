"""results.csv of the time-boxed GPU run: the rows every (row, seed) run logged (rounds.jsonl), rounds 0..k with
k the last round all 15 runs finished (RESULTS.md plan, 2026-12-04 13:17 UTC). python make_csv.py DIR"""
import csv
import json
import sys
from pathlib import Path

from medal.simulation.simulate import CSV_FIELDS

here = Path(__file__).resolve().parent
out = Path(sys.argv[1])
rows = [json.loads(line) for line in (here / "rounds.jsonl").read_text().splitlines() if line.strip()]
runs = {(r["strategy"], r["seed"]) for r in rows}
k = min(max(r["round"] for r in rows if (r["strategy"], r["seed"]) == run) for run in runs)
meta = json.loads((here / "simulation.json").read_text())
fields = CSV_FIELDS + [f"dice_{n}" for n in meta["class_names"]]
order = meta["config"]["simulation"]["strategies"]
keep = sorted((r for r in rows if r["round"] <= k), key=lambda r: (order.index(r["strategy"]), r["seed"], r["round"]))
out.mkdir(parents=True, exist_ok=True)
with open(out / "results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(keep)
(out / "simulation.json").write_text(json.dumps(meta, indent=1))
print(f"{len(runs)} runs, rounds 0..{k}: {len(keep)} rows")
