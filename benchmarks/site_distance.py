"""Does the cold start's slice representation set a new site's slices apart from the labelled sites'?

    python benchmarks/site_distance.py DATA --groups GROUPS.json [--split FILE]

A diagnostic for a value term that does not vanish where the model predicts no foreground but the image is
unlike the labelled ones (the new-site runs of issue 11: the default's class-stratified value and fg_random
both follow the model's predicted foreground, so neither steadily reaches a site the model cannot segment yet;
RESULTS.md 2026-12-05). Before any such term is built, this measures whether the representation medal already
has, the cold start's contrastive slice encoder (:mod:`medal.coldstart.encoder`, the one ``fg_typical``
clusters with, trained on the pool's own images, no labels), tells a site apart at all.

For each group g of GROUPS.json (case -> group, as ``label_efficiency.py --groups``), over the pool cases of the
split's pool side: each slice's distance (unit-normalised embeddings) to the nearest slice of *another case*
of the other groups, for g's slices and for up to 400 slices of the other groups; the AUC of that distance
separating g from the rest (0.5: no separation, 1: every g slice farther). A control row does the same for
as many cases of the largest group as the smallest group has, named a group of their own. It trains nothing but the encoder
(cached per dataset, as the cold start caches it) and touches no test case. The last line is the AUC of the
group with the fewest pool cases (the minority, or new, site of a derived layout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def separation(z: np.ndarray, owner: np.ndarray, group: np.ndarray, g: str, *, sample: int = 400,
               seed: int = 0) -> dict:
    """Distances to the nearest other-group slice of another case, for group ``g`` and a sample of the rest."""
    from scipy.stats import mannwhitneyu

    zz = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    ref = np.flatnonzero(group != g)
    rest = np.random.default_rng(seed).permutation(ref)[:sample]

    def nearest(rows):
        out = np.empty(len(rows))
        for n, r in enumerate(rows):
            d = np.linalg.norm(zz[ref] - zz[r], axis=1)
            d[owner[ref] == owner[r]] = np.inf
            out[n] = d.min()
        return out

    a, c = nearest(rest), nearest(np.flatnonzero(group == g))
    return {"group": g, "slices": int(len(c)), "median_group": float(np.median(c)), "median_rest": float(np.median(a)),
            "q90_group": float(np.quantile(c, 0.9)), "q90_rest": float(np.quantile(a, 0.9)),
            "auc": float(mannwhitneyu(c, a).statistic / (len(a) * len(c)))}


def read_groups_and_pool(groups_path, split_path) -> tuple[dict, set]:
    """GROUPS.json (case id -> group) and the pool side of a split file; exits with a one-line error naming the
    file that cannot be read."""
    out = []
    for path, read in ((groups_path, lambda d: {str(k): str(v) for k, v in d.items()}),
                       (split_path, lambda d: set(d["pool"]))):
        try:
            out.append(read(json.loads(Path(path).read_text())))
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            sys.exit(f"{path}: cannot be read ({type(exc).__name__}: {exc})")
    return out[0], out[1]


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a dataset folder (imagesTr/labelsTr/dataset.json)")
    ap.add_argument("--groups", required=True, help="JSON: case id -> group name")
    ap.add_argument("--split", default=str(HERE / "hippocampus_tuning_split.json"),
                    help="split file whose pool side is read (default: the tuning split)")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    from _record import record

    from medal.coldstart import select as S
    from medal.config import ColdstartConfig, DataConfig
    from medal.data import load_dataset

    groups, pool = read_groups_and_pool(args.groups, args.split)
    ds = load_dataset(args.data)
    cases = [c for c in ds.cases if c.case_id in pool and c.case_id in groups]
    if not cases:
        sys.exit(f"{args.groups}: no pool case of {args.split} is named in it")
    cfg = ColdstartConfig()
    volumes, vol_axes, good, owner, *_ = S._describe(ds, cases, cfg, DataConfig(), ["0"])
    z, _ = S._representation(volumes, vol_axes, good, cfg)
    owner = np.asarray(owner)
    group = np.array([groups[o] for o in owner])
    names = sorted(set(group))
    n_cases = {g: len({c.case_id for c in cases if groups[c.case_id] == g}) for g in names}
    rows = [separation(z, owner, group, g) for g in names]
    # control: as many cases as the smallest group has, drawn from the largest group, called a group of their own;
    # AUC near 0.5 says the distance sees sites, not merely other cases
    smallest, largest = min(names, key=lambda g: n_cases[g]), max(names, key=lambda g: n_cases[g])
    big = sorted({o for o, g in zip(owner, group) if g == largest})
    pick = set(np.random.default_rng(0).permutation(big)[:n_cases[smallest]].tolist())
    control = np.where(np.isin(owner, list(pick)), "control", group)
    rows.append({**separation(z, owner, control, "control"), "group": f"control ({n_cases[smallest]} cases of {largest})"})
    n_cases[rows[-1]["group"]] = len(pick)
    lines = [f"- data `{args.data}`, groups `{args.groups}`, pool side of `{Path(args.split).name}`: "
             f"{len(cases)} cases, {len(z)} axial slices; representation: the cold start's default "
             f"({cfg.representation}, {cfg.encoders} encoder(s), {z.shape[1]} dimensions)", "",
             "| group | pool cases | slices | distance to nearest other-group slice: group median (q90) | rest median (q90) | AUC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['group']} | {n_cases[r['group']]} | {r['slices']} | {r['median_group']:.3f} ({r['q90_group']:.3f}) | "
                     f"{r['median_rest']:.3f} ({r['q90_rest']:.3f}) | {r['auc']:.3f} |")
    for line in lines:
        print(line)
    if not args.no_record:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "site_distance.json").write_text(json.dumps(
            {"data": str(args.data), "groups": str(args.groups), "split": Path(args.split).name,
             "dimensions": int(z.shape[1]), "pool_cases": n_cases, "per_group": rows}, indent=1) + "\n")
        record("Site distance: does the cold start's representation tell a new site apart?", lines)
    auc = next(r["auc"] for r in rows if r["group"] == smallest)
    print(f"auc_smallest_group_{smallest}: {auc:.3f}")
    return auc


if __name__ == "__main__":
    main()
