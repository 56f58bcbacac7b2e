"""What each row of the two tail screens painted (from each run's annotation_log.jsonl, the oracle's
features of the true labels): slices, foreground slices, slices holding tail, the tail's share of the painted
foreground area. Run in the folder holding screen01/ and screen10/ (the screens' --out folders)."""
import json

import numpy as np

for scr in ("screen01", "screen10"):
    print(scr)
    for s in ("random", "fg_random", "default"):
        per = []
        for seed in (0, 1):
            recs = [json.loads(line) for r in ("round_000", "round_001")
                    for line in open(f"{scr}/{s}/seed_{seed}/{r}/annotation_log.jsonl")]
            area = np.array([[x[f"area_mm2_{c}"] for c in (1, 2, 3)] for x in recs])
            fg, tail = int((area.sum(1) > 0).sum()), int((area[:, 2] > 0).sum())
            per.append(f"seed{seed}: {len(recs)} slices, {fg} fg, {tail} with tail ({100 * tail / max(fg, 1):.0f}% "
                       f"of fg), tail {100 * area[:, 2].sum() / area.sum():.1f}% of painted fg area, "
                       f"{sum(x['seconds'] for x in recs):.0f} s")
        print(f"  {s:10s}", " | ".join(per))
