"""The 05:48 UTC rule (RESULTS.md) on all eight ordinary-pool fires; run from the repository root."""
import json, math
import numpy as np
from scipy import stats
R = "benchmarks/results/"
pairs = [("label_efficiency_tuning_auto_ordinary", ["37", "38"]),
         ("label_efficiency_tuning_auto_fire_screen", ["1041", "1074"]),
         ("label_efficiency_tuning_auto_fire_confirm", ["1080", "1126", "1129", "1139"])]
out = {"fires": {}, "rate": 0.050, "rate_upper": 0.081}
for name, seeds in pairs:
    path = name if name.startswith("/") else R + name
    d = json.load(open(path + ".json"))["strategies"]
    for s in seeds:
        out["fires"][s] = {"aubc": d["default_auto"]["aubc_per_seed"][s] - d["default"]["aubc_per_seed"][s],
                           "final_dice": d["default_auto"]["final_dice_per_seed"][s] - d["default"]["final_dice_per_seed"][s]}
ok = True
for m in ("aubc", "final_dice"):
    x = np.array([v[m] for v in out["fires"].values()])
    mean, se = x.mean(), x.std(ddof=1) / math.sqrt(len(x))
    lo = mean - stats.t.ppf(0.975, len(x) - 1) * se
    a, b = mean * 0.05, lo * 0.081
    out[m] = {"n": len(x), "mean": mean, "sd": x.std(ddof=1), "lower95": lo, "better": int((x > 0).sum()),
              "expected_per_run": a, "pessimistic_per_run": b, "a_met": a >= -0.001, "b_met": b >= -0.002}
    ok &= a >= -0.001 and b >= -0.002
    print(m, {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out[m].items()})
out["switch"] = bool(ok)
print("switch:", ok)
json.dump(out, open(R + "raw/label_efficiency_tuning_auto_fire_confirm/decision.json", "w"), indent=1, default=float)
