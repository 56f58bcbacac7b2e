"""The trigger with the gap (selection.novelty_gap 1.2) on this run's first labels: would it have fired where the rank
test did not?   python gap_of_starts.py DATA SITES_JSON RUN_DIR OUT.json   (the cold start's encoder, cached)"""
import json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import novelty_trigger  # benchmarks/novelty_trigger.py
from medal.data import load_dataset
from medal.selection.strategies import NOVELTY_GAP, far_case_test

data, sites, run = sys.argv[1], json.load(open(sys.argv[2])), Path(sys.argv[3])
pool = set(json.load(open(Path(novelty_trigger.HERE) / "hippocampus_tuning_split.json"))["pool"])
ds = load_dataset(data)
z, owner, idx, inner = novelty_trigger.embed(ds, [c for c in ds.cases if c.case_id in pool])
out = {}
for f in sorted(run.glob("initial/seed_*/tasks.json")):
    ann = {t["case_id"] for t in json.loads(f.read_text())["tasks"]}
    t = far_case_test(z, owner, inner, ann, gap_level=NOVELTY_GAP)
    out[f.parent.name.split("_")[1]] = {"p": t.p, "gap": t.gap, "fired_rank": t.p < t.alpha, "fired_with_gap": t.fired,
                                        "far": len(t.far_cases), "far_C": sum(sites.get(c) == "C" for c in t.far_cases)}
    print(f.parent.name, out[f.parent.name.split("_")[1]])
json.dump(out, open(sys.argv[4], "w"), indent=1)
