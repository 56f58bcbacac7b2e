"""Read-out of the 08:37 / 08:55 UTC plans: the trigger's level 0.1 on the new-site protocol.

python readout.py B_DIR B2_DIR REC4044_DIR REC2731_DIR OUT.json
B: seeds 45-49 (random, fg_random, default at 0.1); B2: default at 0.1 on seeds 40, 41, 43, 44;
REC4044: the 06:44 UTC run (random, fg_random, default at 0.05) on seeds 40-44; REC2731: the 00:02 UTC run
(default_auto at 0.05, every round-2 p >= 0.1, so its decisions are those of 0.1) on seeds 27-31.
"""
import collections, csv, json, sys
from pathlib import Path
import numpy as np
from scipy import stats

b, b2, r44, r31, out_path = map(Path, sys.argv[1:6])
def rows(d):
    by = collections.defaultdict(dict)
    for r in csv.DictReader(open(d / 'results.csv')):
        by[(r['strategy'], int(r['seed']))][int(r['round'])] = r
    return by
def aubc(d, st):
    return {int(k): v for k, v in json.load(open(d / 'summary.json'))['strategies'][st]['aubc_per_seed'].items()}
def balanced(by, st):
    seeds = sorted(s for (x, s) in by if x == st)
    return {s: float(np.mean([float(by[(st, s)][2]['dice_group_' + g]) for g in 'ABC'])) for s in seeds}
def final(by, st):
    seeds = sorted(s for (x, s) in by if x == st)
    return {s: float(by[(st, s)][2]['dice_mean']) for s in seeds}
def paired(a, b):
    ss = sorted(set(a) & set(b)); x = np.array([a[s] - b[s] for s in ss])
    return {"seeds": ss, "mean": float(x.mean()), "wins": int((x > 0).sum()), "n": len(x),
            "p": float(stats.ttest_rel([a[s] for s in ss], [b[s] for s in ss]).pvalue) if len(x) > 1 else None}
B, B2, R44, R31 = rows(b), rows(b2), rows(r44), rows(r31)
out = {}
# determinism: seed 41 at 0.1 (B2) must repeat the recorded 0.05 row (same decisions)
a_b2, a_r44 = aubc(b2, 'default'), aubc(r44, 'default')
f_b2, f_r44 = final(B2, 'default'), final(R44, 'default')
out["determinism_seed_41"] = {"aubc_b2": a_b2[41], "aubc_recorded": a_r44[41], "final_b2": f_b2[41],
                              "final_recorded": f_r44[41],
                              "repeats": bool(round(a_b2[41], 4) == round(a_r44[41], 4)
                                              and round(f_b2[41], 4) == round(f_r44[41], 4))}
print("determinism, seed 41:", out["determinism_seed_41"])
# the level's effect where it changed the first decision (40, 43, 44): 0.1 (B2) minus 0.05 (recorded)
eff = {k: {s: v for s, v in d.items() if s in (40, 43, 44)} for k, d in
       [("aubc_01", a_b2), ("aubc_005", a_r44), ("final_01", f_b2), ("final_005", f_r44),
        ("bal_01", balanced(B2, 'default')), ("bal_005", balanced(R44, 'default'))]}
out["level_effect_40_43_44"] = {m: paired(eff[m + "_01"], eff[m + "_005"]) for m in ("aubc", "final", "bal")}
print("level effect (0.1 - 0.05) on 40, 43, 44:", json.dumps(out["level_effect_40_43_44"]))
# default at 0.1 on seeds 40-44: B2 for 40, 41, 43, 44; the recorded row for 42 (same decisions at both levels)
d4044_a = {**{42: a_r44[42]}, **a_b2}
d4044_b = {**{42: balanced(R44, 'default')[42]}, **balanced(B2, 'default')}
d4044_f = {**{42: f_r44[42]}, **f_b2}
blocks = {
    "40-44": ({s: d4044_a[s] for s in range(40, 45)}, d4044_b, d4044_f, r44, R44),
    "45-49": (aubc(b, 'default'), balanced(B, 'default'), final(B, 'default'), b, B),
    "27-31": (aubc(r31, 'default_auto'), balanced(R31, 'default_auto'), final(R31, 'default_auto'), r31, R31),
}
res = {}
for name, (da, db, df, d, by) in blocks.items():
    res[name] = {base: {"aubc": paired(da, aubc(d, base)), "balanced_final": paired(db, balanced(by, base)),
                        "final": paired(df, final(by, base))} for base in ("random", "fg_random")}
for label, names in [("40-49 (fresh since auto was adopted)", ["40-44", "45-49"]),
                     ("27-31 + 40-49", ["27-31", "40-44", "45-49"])]:
    res[label] = {}
    for base in ("random", "fg_random"):
        da, db_, ra, rb, df, rf = {}, {}, {}, {}, {}, {}
        for n in names:
            a, bb, ff, d, by = blocks[n]
            da.update(a); db_.update(bb); df.update(ff)
            ra.update(aubc(d, base)); rb.update(balanced(by, base)); rf.update(final(by, base))
        res[label][base] = {"aubc": paired(da, ra), "balanced_final": paired(db_, rb), "final": paired(df, rf)}
out["default_at_0.1_vs_baselines"] = res
for k, v in res.items():
    for base, m in v.items():
        print(f"{k} vs {base}: " + "; ".join(f"{n} {x['mean']:+.4f} ({x['wins']}/{x['n']}, p = {x['p']:.3g})"
                                               for n, x in m.items()))
json.dump(out, open(out_path, 'w'), indent=1)
