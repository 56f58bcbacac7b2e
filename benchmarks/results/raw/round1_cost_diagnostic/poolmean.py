import sys, numpy as np
from pathlib import Path
from medal.data import load_dataset, load_volume
from medal.tasks import read_tasks
from medal.costs import CostModel, expected_effort_features, effort_features
from medal.regions import slice_units, resolve_axis
from medal.uncertainty.score import load_probs
run = Path(sys.argv[1]); ds = load_dataset("/work/shared/data/hippocampus")
model = CostModel.default(ds.n_classes)
preds, trues = [], []
for d in sorted((run / "round_000" / "scores").iterdir()):
    if not d.is_dir(): continue
    probs = load_probs(d / "probs.nii.gz"); truth = load_volume(ds.case(d.name).label)
    axis = resolve_axis("axial", truth.orientation); u = slice_units(truth.shape, axis=axis)
    g = dict(axis=axis, spacing=truth.spacing, n_classes=ds.n_classes)
    preds.append(model.predict(expected_effort_features(u, probs, **g)))
    trues.append(model.predict(effort_features(u, ds.label_map.to_index(truth.array), **g)))
p, t = np.concatenate(preds), np.concatenate(trues)
init = read_tasks(run / "round_init" / "tasks.json")
import json
log = [json.loads(l) for l in (run / "round_init" / "annotation_log.jsonl").read_text().splitlines()]
mt = np.mean([r["seconds"] for r in log])
print(f"pool slices {len(p)}: mean pred {p.mean():.1f} s, mean true {t.mean():.1f} s (true/pred {t.mean()/p.mean():.2f}); random first labels: mean true {mt:.1f} s over {len(log)} -> estimate {mt/p.mean():.2f}")
