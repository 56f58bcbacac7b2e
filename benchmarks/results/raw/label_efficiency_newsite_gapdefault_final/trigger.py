"""The novelty trigger of the default row per seed and selection round (tasks.json's "novelty": rank p, gap, which
route fired), with how many of the far and of the labelled cases are site C.
    python trigger.py RUN_DIR SITES_JSON OUT.json"""
import glob, json, os, sys

run, sites = sys.argv[1], json.load(open(sys.argv[2]))
out = {}
for f in sorted(glob.glob(os.path.join(run, "default", "seed_*", "round_*", "tasks.json"))):
    seed, rnd = f.split(os.sep)[-3], f.split(os.sep)[-2]
    n = json.load(open(f)).get("novelty") or {}
    if "fired" not in n:
        continue
    far = n.get("far_cases", [])
    rank = n["p"] < n.get("alpha", 0.05)
    out.setdefault(seed, {})[rnd] = {"fired": n["fired"], "p": n["p"], "gap": n.get("gap"),
                                     "gap_level": n.get("gap_level"), "by_rank": bool(rank),
                                     "by_gap_only": bool(n["fired"] and not rank), "far": len(far),
                                     "far_C": sum(sites.get(c) == "C" for c in far),
                                     "labelled": n.get("annotated_cases"), "open": n.get("open_cases")}
json.dump(out, open(sys.argv[3], "w"), indent=1)
for seed, rounds in out.items():
    print(seed, {r: (v["fired"], round(v["p"], 4), None if v["gap"] is None else round(v["gap"], 3), v["far"], v["far_C"])
                 for r, v in rounds.items()})
