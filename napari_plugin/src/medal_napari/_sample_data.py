"""Sample data: a real hippocampus MRI case with a small ready-made medal round.

The bundled round (``sample_round/``: tasks, entropy, prediction, supervoxel mask) refers to the case in
medal's own bundled sample. It is copied to a writable folder (``$MEDAL_SAMPLE_ROUND`` or
``~/.cache/medal/napari-sample-round``) the first time and *reused* after that, so annotations made
on the sample survive a restart like any other round's.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

__all__ = ["prepare_sample_round", "sample_round"]


def _target() -> Path:
    env = os.environ.get("MEDAL_SAMPLE_ROUND")
    return Path(env) if env else Path.home() / ".cache" / "medal" / "napari-sample-round"


def prepare_sample_round(target=None) -> Path:
    """Copy the sample round to ``target`` (once) and point it at medal's bundled dataset; returns the folder."""
    from medal.data import atomic_write_json, sample_dataset

    target = Path(target) if target is not None else _target()
    if (target / "tasks.json").is_file():
        return target  # resume: never overwrite work done on it
    src = Path(str(resources.files("medal_napari") / "sample_round"))
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    body = json.loads((tmp / "tasks.json").read_text(encoding="utf-8"))
    body["dataset_root"] = str(sample_dataset())
    body["scores_dir"] = str((target / "scores").resolve())
    atomic_write_json(tmp / "tasks.json", body)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # an empty or half-made folder without tasks.json
        shutil.copytree(tmp, target, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def sample_round():
    """npe2 sample: returns the case's image; the medal widget then opens the round around it."""
    import napari
    from qtpy.QtCore import QTimer

    from medal.data import load_volume, sample_dataset

    from . import annotate

    path = prepare_sample_round()
    body = json.loads((path / "tasks.json").read_text(encoding="utf-8"))
    image = load_volume(Path(sample_dataset()) / body["tasks"][0]["image"])
    viewer = napari.current_viewer()
    if viewer is not None:
        QTimer.singleShot(0, lambda: annotate(path, viewer))
    return [(image.array, {"name": "image", "scale": image.spacing}, "image")]
