"""npe2 reader: dropping a ``tasks.json`` (or a round folder) on napari opens the task widget."""

from __future__ import annotations

from pathlib import Path

__all__ = ["get_reader"]


def _tasks_file(path) -> Path | None:
    if isinstance(path, list):
        return None
    p = Path(path)
    if p.is_dir() and (p / "tasks.json").is_file():
        return p / "tasks.json"
    if p.name == "tasks.json" and p.is_file():
        return p
    return None


def get_reader(path):
    if _tasks_file(path) is None:
        return None
    return read_round


def read_round(path):
    """Open the round in the current viewer's medal widget; adds its layers itself."""
    import napari

    from . import annotate

    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("open a medal round from within napari (no current viewer)")
    annotate(_tasks_file(path), viewer)
    return [(None,)]
