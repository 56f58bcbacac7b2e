"""The 10:59 UTC plan's rule (RESULTS.md, 2026-12-06): the price of a trigger fire at p in [0.05, 0.1).

python decision.py  (from this folder; reads novelty.json and ../../label_efficiency_tuning_alpha_price_gpu.json,
writes decision.json)"""
import json
from math import sqrt
from pathlib import Path

from scipy import stats

HERE = Path(__file__).resolve().parent
res = json.loads((HERE.parents[1] / "label_efficiency_tuning_alpha_price_gpu.json").read_text())
nov = json.loads((HERE / "novelty.json").read_text())
d, a = res["strategies"]["default"], res["strategies"]["default_alpha05"]


def first(row, seed):
    return nov[f"{row}/seed_{seed}/round_000/tasks.json"]


fires, later = [], {}
for s in sorted(d["aubc_per_seed"], key=int):
    f0, g0 = first("default", s), first("default_alpha05", s)
    if f0["fired"] and not g0["fired"]:
        fires.append(s)
    later[s] = {row: nov[f"{row}/seed_{s}/round_001/tasks.json"]["fired"] for row in ("default", "default_alpha05")}


def lower(x):  # one-sided 95% lower t-bound of the mean (the 05:48 UTC rule's bound)
    n = len(x)
    m = sum(x) / n
    sd = sqrt(sum((v - m) ** 2 for v in x) / (n - 1))
    return float(m), float(sd), float(m) - float(stats.t.ppf(0.95, n - 1)) * sd / sqrt(n)


P1 = {"aubc": (-0.0026, -0.0107), "final_dice": (-0.0057, -0.0095)}  # 8 fires at p < 0.05 (06:28 UTC entry)
R1, U1 = 0.050, 0.081
bands = {"0.1": (0.05, 0.10, 22 / 300, 0.1085), "0.07": (0.05, 0.07, 13 / 300, None)}


def wilson_upper(k, n, z=1.96):
    p = k / n
    c, h = p + z * z / (2 * n), z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (c + h) / (1 + z * z / n)


out = {"fires": fires, "later_round_fires": later, "levels": {}}
for level, (lo, hi, rate, upper) in bands.items():
    upper = upper if upper is not None else wilson_upper(round(rate * 300), 300)
    band = [s for s in fires if lo <= first("default", s)["p"] < hi]
    row = {"seeds": band, "rate": rate, "rate_upper": upper}
    ok = True
    for key, per in (("aubc", "aubc_per_seed"), ("final_dice", "final_dice_per_seed")):
        price = [d[per][s] - a[per][s] for s in band]
        m, sd, lb = lower(price)
        t = stats.ttest_1samp(price, 0.0)
        expected = float(P1[key][0] * R1 + m * rate)
        pessimistic = float(P1[key][1] * U1 + lb * upper)
        passed = expected >= -0.001 and pessimistic >= -0.002
        ok &= passed
        row[key] = {"price_per_seed": dict(zip(band, price)), "mean": m, "sd": sd, "lower95": lb,
                    "better": int(sum(v > 0 for v in price)), "n": len(price), "p_two_sided": float(t.pvalue),
                    "expected_per_run": expected, "pessimistic_per_run": pessimistic, "passes": bool(passed)}
    row["passes"] = bool(ok)
    out["levels"][level] = row
(HERE / "decision.json").write_text(json.dumps(out, indent=1) + "\n")
for level, row in out["levels"].items():
    print(level, len(row["seeds"]), "fires;", {k: {kk: round(vv, 5) if isinstance(vv, float) else vv
          for kk, vv in row[k].items() if kk != "price_per_seed"} for k in ("aubc", "final_dice")}, "passes:", row["passes"])
