"""The gap (selection.novelty_gap 1.2) in the selection rounds after the start, re-read from finished runs' tasks:
for every run folder, row, seed and selection round, the labelled cases are those of the tasks annotated before it
(round_init, then round_000, ...); far_case_test on the cold start's encoder (cached) gives p and gap.

    python gap_later_rounds.py OUT.json DATA RUN_DIR [RUN_DIR ...]
"""
import json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/ (from results/raw/NAME/)
import novelty_trigger  # benchmarks/novelty_trigger.py
from medal.data import load_dataset
from medal.selection.strategies import NOVELTY_GAP, far_case_test

out_path, data, runs = sys.argv[1], sys.argv[2], [Path(r) for r in sys.argv[3:]]
pool = set(json.load(open(Path(novelty_trigger.HERE) / "hippocampus_tuning_split.json"))["pool"])
ds = load_dataset(data)
z, owner, idx, inner = novelty_trigger.embed(ds, [c for c in ds.cases if c.case_id in pool])
out = {}
for run in runs:
    for seed_dir in sorted(run.glob("*/seed_*")):
        if seed_dir.parent.name in ("initial", "shared"):
            continue
        rounds = sorted(seed_dir.glob("round_*"), key=lambda r: (r.name != "round_init", r.name))  # the start first
        labelled = set()
        for r in rounds:
            f = r / "tasks.json"
            if not f.exists():
                continue
            tasks = json.loads(f.read_text())
            nov = tasks.get("novelty") or {}
            if r.name != "round_init" and "fired" in nov:
                t = far_case_test(z, owner, inner, labelled, gap_level=NOVELTY_GAP)
                key = f"{run.name}/{seed_dir.parent.name}/{seed_dir.name}/{r.name}"
                out[key] = {"labelled": t.annotated_cases, "labelled_recorded": nov.get("annotated_cases"),
                            "open": t.open_cases, "p": t.p, "p_recorded": nov.get("p"), "gap": t.gap,
                            "fired_rank": bool(t.p < t.alpha), "fired_with_gap": bool(t.fired),
                            "fired_recorded": nov.get("fired")}
                print(key, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out[key].items()})
            labelled |= {x["case_id"] for x in tasks["tasks"] if x.get("status") == "done"}  # time-boxed rounds: "todo" ones were never reached
json.dump(out, open(out_path, "w"), indent=1)
