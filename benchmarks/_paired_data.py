"""What `mixed_spacing.py` and `mixed_orientation.py` share: a derived copy of the tuning split's cases with some of
them rewritten, one model per seed and data setting trained on every pool label, each validation case's Dice on its
own grid (`medal.simulation.evaluate`, the code path simulations use), and paired Wilcoxon tests."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def write_copy(src: Path, out: Path, ids: list[str], changed: set[str], change, *, want: dict, name: str, how: str,
               script: str, remark: str) -> Path:
    """The cases ``ids`` of ``src`` in ``out`` (``imagesTr``, ``labelsTr``, ``dataset.json``, the licence), those in
    ``changed`` as ``change(image, label)`` returns them. Reused as it is when ``out/derived.json`` equals ``want``."""
    from _derived import write_derived

    from medal.data import load_dataset, load_volume, save_volume

    stamp = out / "derived.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    ds = load_dataset(src)
    for cid in ids:
        case = ds.case(cid)
        img, lab = load_volume(case.image), load_volume(case.label)
        if cid in changed:
            img, lab = change(img, lab)
        save_volume(img, out / "imagesTr" / f"{cid}.nii.gz")
        save_volume(lab, out / "labelsTr" / f"{cid}.nii.gz")
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in sorted(ids)]
    meta["numTraining"] = len(ids)
    meta.pop("test", None)
    meta["numTest"] = 0
    write_derived(src, out, meta, name=name, how=how, script=script, remark=remark)
    stamp.write_text(json.dumps(want))
    return out


def train_and_score(ds, pool: list[str], val: list[str], base, settings: dict, seeds, *, quick: bool, work: Path):
    """For each seed and each ``settings`` entry (name -> ``data`` config, or a whole config), train ``base`` (or that
    config) from scratch on every label of ``pool`` and take the mean foreground Dice of each ``val`` case. Returns ``(dice, wall, spacing)``:
    ``dice[name][seed]`` per validation case, ``wall[name]`` seconds per run, the last resolved spacing."""
    from medal.data.resample import resolve_spacing
    from medal.simulation.simulate import evaluate
    from medal.training import prepare_items, train_model

    dice = {s: {} for s in settings}
    wall = {s: [] for s in settings}
    target = None
    for seed in seeds:
        for k, (name, data_cfg) in enumerate(settings.items()):
            cfg = data_cfg if hasattr(data_cfg, "model") else dataclasses.replace(base, data=data_cfg)
            tcfg = dataclasses.replace(cfg.training, seed=seed, val_fraction=0.0)
            if quick:
                tcfg = dataclasses.replace(tcfg, max_epochs=2, iterations_per_epoch=10)
            spacing = resolve_spacing(cfg.data, ds)
            target = spacing or target
            t0 = time.perf_counter()
            items = prepare_items(ds, cfg.data, case_ids=set(pool), spacing=spacing, orientation=cfg.data.orientation)
            ckpt = work / f"seed{seed}_setting{k}.pt"
            train_model(items, [], n_classes=ds.n_classes, model_cfg=cfg.model, train_cfg=tcfg, checkpoint=ckpt,
                        progress=False, label_map=ds.label_map, spacing=spacing, orientation=cfg.data.orientation)
            per_case = evaluate(ckpt, ds, val, cfg, per_case=True)
            wall[name].append(time.perf_counter() - t0)
            dice[name][seed] = per_case.mean(axis=1)  # mean foreground Dice per validation case
            print(json.dumps({"seed": seed, "setting": name, "dice": float(dice[name][seed].mean()),
                              "wall_s": round(wall[name][-1])}), flush=True)
    return dice, wall, target


def write_result(name: str, out: dict, quick: bool) -> Path:
    """``out`` as ``benchmarks/results/<name>.json`` (``<name>_quick.json`` for a ``--quick`` run)."""
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    path = res_dir / (f"{name}_quick.json" if quick else f"{name}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path


def paired(a: np.ndarray, b: np.ndarray, parts: dict) -> dict:
    """Per part (name -> case mask): mean of ``a - b`` over cases and seeds, Wilcoxon p, pairs where ``a`` is higher."""
    from scipy.stats import wilcoxon

    out = {}
    for part, mask in parts.items():
        diff = (a[:, mask] - b[:, mask]).ravel()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        out[part] = {"mean_difference": float(diff.mean()), "p_wilcoxon": p, "pairs_a_better": int((diff > 0).sum()),
                     "pairs": int(diff.size)}
    return out


def arguments(doc: str, share_flag: str, work: str, argv=None):
    """The two scripts' command line: ``--quick``, ``--seeds``, the share of cases rewritten, ``--data``, ``--work``,
    ``--config``."""
    import argparse

    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs x 10 steps (smoke run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(share_flag, type=float, default=0.33)
    ap.add_argument("--data", default=str(here.parent.parent / "shared" / "data" / "hippocampus"))
    ap.add_argument("--work", default=work)
    ap.add_argument("--config", default=str(here.parent / "configs" / "label_efficiency_cpu.yaml"))
    return ap.parse_args(argv)


def split_and_base(split_path: Path, config: str):
    """The tuning split's pool and validation ids, and the config with no simulation rows (only training here)."""
    from medal.config import load_config

    split = json.loads(Path(split_path).read_text())
    base = load_config(config)
    base = dataclasses.replace(base, simulation=dataclasses.replace(base.simulation, variants={},
                                                                          strategies=("random",)))
    return sorted(split["pool"]), sorted(split["test"]), base


def summarise(dice: dict, wall: dict, seeds, mask: np.ndarray, marked: str, rest: str) -> tuple[list[str], dict]:
    """Per setting: a markdown row (``marked`` cases, the ``rest``, all, ``marked`` per seed, minutes) and the
    figures behind it (``{marked, rest, all, per_seed_all, per_seed_<marked>, train_and_eval_s}``)."""
    rows, figures = [], {}
    for name in dice:
        d = np.stack([dice[name][s] for s in seeds])
        figures[name] = {marked: float(d[:, mask].mean()), rest: float(d[:, ~mask].mean()), "all": float(d.mean()),
                         "per_seed_all": d.mean(1).tolist(), f"per_seed_{marked}": d[:, mask].mean(1).tolist(),
                         "train_and_eval_s": float(np.mean(wall[name]))}
        rows.append(f"| {name} | {d[:, mask].mean():.3f} | {d[:, ~mask].mean():.3f} | {d.mean():.3f} | "
                    f"{' / '.join(f'{v:.3f}' for v in d[:, mask].mean(1))} | {np.mean(wall[name]) / 60:.1f} |")
    return rows, figures
