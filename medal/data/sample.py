"""The bundled real sample: 20 hippocampus MRI cases (MSD Task04, CC-BY-SA 4.0)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["sample_dataset"]


def sample_dataset() -> Path:
    """Path of the bundled sample dataset (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``LICENSE``).

    Twenty cases of the Medical Segmentation Decathlon's Task04 Hippocampus, installed with the
    package. Its ``README.md`` gives the attribution; its ``LICENSE`` is CC-BY-SA 4.0.
    """
    path = Path(str(resources.files("medal") / "sample_data" / "hippocampus"))
    if not (path / "dataset.json").is_file():
        raise FileNotFoundError(f"{path}: the bundled sample is missing; reinstall medal")
    return path
