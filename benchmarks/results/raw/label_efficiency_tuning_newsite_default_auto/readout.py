"""Read-out of the 06:44 plan: the shipped default (novelty auto) vs random / fg_random on the new-site protocol."""
import csv, collections, json, sys
import numpy as np
from scipy import stats
def load(path, rename=None):
    by = collections.defaultdict(dict)
    for r in csv.DictReader(open(path)):
        st = (rename or {}).get(r['strategy'], r['strategy'])
        by[(st, int(r['seed']))][int(r['round'])] = r
    return by
new = load(sys.argv[1])
old = load(sys.argv[2], rename={'default': 'default_off', 'default_auto': 'default'})
out = {}
def metrics(by, strat):
    seeds = sorted(s for (st, s) in by if st == strat)
    bal = {s: float(np.mean([float(by[(strat, s)][2]['dice_group_' + g]) for g in 'ABC'])) for s in seeds}
    c = {s: [float(by[(strat, s)][k]['dice_group_C']) for k in range(3)] for s in seeds}
    units = {s: sum(int(by[(strat, s)][k]['tasks_group_C'] or 0) for k in (1, 2)) for s in seeds}
    return bal, c, units
def paired(a, b):
    ss = sorted(set(a) & set(b)); x = np.array([a[s] - b[s] for s in ss])
    return {"mean": float(x.mean()), "wins": int((x > 0).sum()), "n": len(x),
            "p": float(stats.ttest_rel([a[s] for s in ss], [b[s] for s in ss]).pvalue)}
res = {}
for strat in ['random', 'fg_random', 'default']:
    bal, c, units = metrics(new, strat)
    res[strat] = {"balanced_final": bal, "site_C_dice": c, "site_C_units": units}
    print(strat, 'balanced mean', round(np.mean(list(bal.values())), 4), 'site-C r0..2', np.round(np.mean(list(c.values()), axis=0), 3),
          'site-C units', sum(units.values()))
out["new"] = res
out["balanced_final_paired"] = {b: paired(res['default']['balanced_final'], res[b]['balanced_final']) for b in ['random', 'fg_random']}
print('balanced final, default vs:', out["balanced_final_paired"])
# pooled 10 seeds: AUBC and balanced final Dice from the two summary files
s_new = json.load(open(sys.argv[3]))['strategies']; s_old = json.load(open(sys.argv[4]))['strategies']
pool = {}
for st, st_old in [('default', 'default_auto'), ('random', 'random'), ('fg_random', 'fg_random')]:
    pool[st] = {**{int(k): v for k, v in s_old[st_old]['aubc_per_seed'].items()}, **{int(k): v for k, v in s_new[st]['aubc_per_seed'].items()}}
bal_pool = {}
for st in ['default', 'random', 'fg_random']:
    b_old, _, _ = metrics(old, st); bal_pool[st] = {**b_old, **res[st]['balanced_final']}
out["pooled_10_seeds"] = {"aubc": {b: paired(pool['default'], pool[b]) for b in ['random', 'fg_random']},
                          "balanced_final": {b: paired(bal_pool['default'], bal_pool[b]) for b in ['random', 'fg_random']}}
print('pooled 27-31 + 40-44:', json.dumps(out["pooled_10_seeds"], indent=0))
json.dump(out, open(sys.argv[5], 'w'), indent=1)
