import json, sys
import numpy as np
from pathlib import Path
from medal.data import load_dataset, load_volume
from medal.tasks import read_tasks
from medal.costs import CostModel, expected_effort_features, effort_features
from medal.regions import slice_units
from medal.simulation import unit_mask
from medal.uncertainty.score import load_probs

run = Path(sys.argv[1]); ds = load_dataset(sys.argv[2] if len(sys.argv) > 2 else "/work/shared/data/hippocampus")
model = CostModel.default(ds.n_classes)
scores = run / "round_000" / "scores"
def costs(tasks, tl):
    pred, true = [], []
    for t in tasks:
        probs = load_probs(scores / t.case_id / "probs.nii.gz")
        truth = load_volume(ds.case(t.case_id).label)
        m = unit_mask(t, truth.shape, tl).astype(np.int32)
        g = dict(axis=t.axis, spacing=truth.spacing, n_classes=ds.n_classes, ids=np.array([1]))
        pred.append(float(model.predict(expected_effort_features(m, probs, **g))[0]))
        true.append(float(model.predict(effort_features(m, ds.label_map.to_index(truth.array), **g))[0]))
    return np.array(pred), np.array(true)
init = read_tasks(run / "round_init" / "tasks.json")
p, t = costs([x for x in init.tasks if x.status == "done"], init)
print(f"in-sample (first labels, n={len(p)}): true/pred {t.sum()/p.sum():.2f}  (pred {p.sum():.0f}, true {t.sum():.0f})")
r0 = read_tasks(run / "round_000" / "tasks.json")
done = [x for x in r0.tasks if x.status == "done"]
p2, t2 = costs(done, r0)
print(f"round 1 picks (n={len(p2)}): true/pred {t2.sum()/p2.sum():.2f}  (pred {p2.sum():.0f}, true {t2.sum():.0f})")
