"""Real test volumes for benchmarks: hippocampus cases, optionally zoomed to a larger grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hippocampus"


def real_volume(case: str = "hippocampus_004", *, zoom: float = 1.0) -> np.ndarray:
    """A normalised real MRI volume; ``zoom`` > 1 resamples it (linear) to a larger grid."""
    from scipy import ndimage

    from medal.data import load_volume, normalize_intensity, sample_dataset

    path = DATA / "imagesTr" / f"{case}.nii.gz"
    if not path.is_file():
        path = sample_dataset() / "imagesTr" / f"{case}.nii.gz"
    x = normalize_intensity(load_volume(path).array)
    if zoom != 1.0:
        x = ndimage.zoom(x, zoom, order=1).astype(np.float32)
    return x
