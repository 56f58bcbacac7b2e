"""Merging simulation folders that ran other seeds or other rows of the same protocol.

A label-efficiency comparison needs many seeds (``seeds_for_80pct_power`` in ``summary.json`` says how
many), and an ML engineer runs them as separate batch jobs: one ``medal simulate`` per seed (or per row),
each with its own ``--out``. :func:`merge_runs` joins their ``results.csv`` into one folder, after
checking that they measured the same thing: the same pool and test cases, the same full annotation cost,
the same config apart from ``simulation.seeds``, ``simulation.strategies`` and ``simulation.workers``, and
the same definition of any row they share. A (row, seed) pair present in two folders is refused rather
than silently picked. A config key the user names in ``ignore_config`` (a dotted path, or a section such
as ``coldstart``) may differ, for example a key that a newer medal added at a default that keeps the old
behaviour; the merged ``simulation.json`` lists every such difference under ``merge_ignored``, so the
report says what was waved through. ``write_report`` on the merged ``results.csv`` then gives the curves, AUBC and the
paired tests over every seed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from medal.data import atomic_write_text
from medal.simulation.simulate import _write_csv

__all__ = ["merge_runs", "start_mismatch"]

_PER_RUN_KEYS = ("seeds", "strategies", "workers", "variants")


def _load(folder: Path) -> tuple[dict, list[str], list[dict]]:
    meta_path, csv_path = folder / "simulation.json", folder / "results.csv"
    for p in (meta_path, csv_path):
        if not p.is_file():
            raise ValueError(f"{p}: missing; not a finished medal simulation folder")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    for key in ("pool", "test", "full_annotation_cost_s", "config"):
        if key not in meta:
            raise ValueError(f"{meta_path}: no {key!r}")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if not rows or "strategy" not in fields or "seed" not in fields:
        raise ValueError(f"{csv_path}: no result rows")
    return meta, fields, rows


def _default_config() -> dict:
    import dataclasses

    from medal.config import MedalConfig

    return json.loads(json.dumps(dataclasses.asdict(MedalConfig())))


def _diffs(a, b, prefix: str = "", defaults=None) -> list[str]:
    """Every key path where two JSON-like values differ. A key missing on one side counts, unless ``defaults``
    (the same layout) holds that key with the value the other side has: a setting added to medal after a run
    was made, at its default (medal's new settings default to the old behaviour), does not make the run differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        defaults = defaults if isinstance(defaults, dict) else {}
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                present = a[k] if k in a else b[k]
                if not (k in defaults and defaults[k] == present):
                    out.append(f"{prefix}{k}")
            else:
                out.extend(_diffs(a[k], b[k], f"{prefix}{k}.", defaults.get(k)))
        return out
    return [] if a == b else [prefix.rstrip(".") or "(value)"]


def _ignored(path: str, ignore) -> bool:
    return any(path == k or path.startswith(k + ".") for k in ignore)


def start_mismatch(rows, owner: dict, folders) -> dict[str, dict[str, float]]:
    """Seeds whose round-0 Dice differs between the merged folders: ``{seed: {folder: dice}}``.

    Every row of one seed starts from the same round 0 (the same labels, the same first model), which is what
    makes the paired tests paired. Folders run on another machine or install can train a different first model
    from the same seed (see :func:`medal.simulation.simulate.run_environment`); their rows are then not paired."""
    first: dict[int, dict[str, float]] = {}
    for r in rows:
        if int(float(r["round"])) != 0 or r.get("dice_mean") in (None, ""):
            continue
        seed = int(float(r["seed"]))
        folder = str(folders[owner[(r["strategy"], seed)]])
        first.setdefault(seed, {}).setdefault(folder, float(r["dice_mean"]))
    return {str(seed): v for seed, v in sorted(first.items())
            if len(v) > 1 and max(v.values()) - min(v.values()) > 1e-6}


def merge_runs(folders, out_dir, ignore_config=()) -> Path:
    """Merge the ``results.csv`` of several simulation folders into ``out_dir``; returns its ``results.csv``.

    ``ignore_config``: dotted config keys (or whole sections) allowed to differ between the folders; the
    first folder's values are kept and the differences are recorded in ``simulation.json``
    (``merge_ignored``: folder -> key paths). It also records the ``environments`` the folders ran in, and under
    ``start_mismatch`` any seed whose round 0 differs between folders (:func:`start_mismatch`; the report warns).

    Raises ``ValueError`` (one line, naming the folder and the key) when the runs are not comparable or a
    (row, seed) pair occurs twice, and ``FileExistsError`` when ``out_dir`` already holds results.
    """
    folders = [Path(f) for f in folders]
    ignore = [str(k).strip(".") for k in ignore_config or ()]
    if any(not k for k in ignore):
        raise ValueError("ignore_config: empty key")
    if len(folders) < 2:
        raise ValueError("merge needs at least two simulation folders")
    out_dir = Path(out_dir)
    if (out_dir / "results.csv").exists():
        raise FileExistsError(f"{out_dir / 'results.csv'}: results already here; choose a new folder")
    loaded = [(f, *_load(f)) for f in folders]
    first, meta0, fields0, _ = loaded[0]
    cfg0 = {**meta0["config"], "simulation": {k: v for k, v in meta0["config"].get("simulation", {}).items()
                                              if k not in _PER_RUN_KEYS}}
    strategies: list[str] = []
    seeds: set[int] = set()
    variants: dict = {}
    owner: dict = {}
    merged: list[dict] = []
    waved: dict[str, list[str]] = {}
    for n, (folder, meta, fields, rows) in enumerate(loaded):
        for key in ("pool", "test"):
            if sorted(meta[key]) != sorted(meta0[key]):
                raise ValueError(f"{folder}: its {key} cases differ from {first}'s; not the same protocol")
        if abs(float(meta["full_annotation_cost_s"]) - float(meta0["full_annotation_cost_s"])) > 1e-6:
            raise ValueError(f"{folder}: full_annotation_cost_s differs from {first}'s (another cost model?)")
        if fields != fields0:
            raise ValueError(f"{folder}/results.csv: columns differ from {first}/results.csv")
        sim = meta["config"].get("simulation", {})
        cfg = {**meta["config"], "simulation": {k: v for k, v in sim.items() if k not in _PER_RUN_KEYS}}
        where = _diffs(cfg0, cfg, defaults=_default_config())
        refused = [w for w in where if not _ignored(w, ignore)]
        if refused:
            raise ValueError(f"{folder}: config key {refused[0]!r} differs from {first}'s; not the same protocol"
                             " (merge --ignore-config KEY if that key cannot change these results)")
        if where:
            waved[str(folder)] = where
        for name, definition in (sim.get("variants") or {}).items():
            if name in variants and variants[name] != definition:
                raise ValueError(f"{folder}: row {name!r} is defined differently than in an earlier folder")
            variants.setdefault(name, definition)
        for r in rows:
            key = (r["strategy"], int(float(r["seed"])))
            if owner.setdefault(key, n) != n:
                raise ValueError(f"{folder}: row {key[0]!r} seed {key[1]} is also in {folders[owner[key]]}; "
                                 "merge each pair once")
            if r["strategy"] not in strategies:
                strategies.append(r["strategy"])
            seeds.add(key[1])
            merged.append(r)
    merged.sort(key=lambda r: (strategies.index(r["strategy"]), int(float(r["seed"])), int(float(r["round"]))))
    environments: list = []
    for folder, meta, _, _ in loaded:
        for env in meta.get("environments") or [{"note": f"not recorded in {folder}"}]:
            if env not in environments:
                environments.append(env)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(meta0)
    meta["config"] = json.loads(json.dumps(meta0["config"]))
    meta["config"]["simulation"].update(seeds=sorted(seeds), strategies=strategies, variants=variants)
    meta["merged_from"] = [str(f) for f in folders]
    meta["environments"] = environments
    if waved:
        meta["merge_ignored"] = waved
    mismatch = start_mismatch(merged, owner, folders)
    if mismatch:
        meta["start_mismatch"] = mismatch
    atomic_write_text(out_dir / "simulation.json", json.dumps(meta, indent=1))
    _write_csv(out_dir / "results.csv", fields0, merged)
    return out_dir / "results.csv"
