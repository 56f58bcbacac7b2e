import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_sample_data_and_licence(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("medal-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sample = "medal/sample_data/hippocampus/"
    for f in ("LICENSE", "README.md", "dataset.json", "SHA256SUMS"):
        assert sample + f in names
    assert sum(n.startswith(sample + "imagesTr/") for n in names) == 20
    assert sum(n.startswith(sample + "labelsTr/") for n in names) == 20
    assert any(n.endswith("entry_points.txt") for n in names)


def test_sample_matches_its_checksums():
    import hashlib

    from medal.data import sample_dataset

    root = sample_dataset()
    lines = (root / "SHA256SUMS").read_text().split("\n")
    checked = 0
    for line in filter(None, lines):
        digest, name = line.split()
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name
        checked += 1
    assert checked == 40


@pytest.mark.slow
def test_plugin_wheel_has_manifest_sample_round_and_no_qt_binding(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO / "napari_plugin")], capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("napari_medal-*.whl"))
    zf = zipfile.ZipFile(wheel)
    names = set(zf.namelist())
    for f in ("napari.yaml", "sample_round/tasks.json", "sample_round/LICENSE", "sample_round/README.md",
              "sample_round/masks/hippocampus_004.nii.gz", "sample_round/scores/hippocampus_004/entropy.nii.gz",
              "sample_round/scores/hippocampus_004/prediction.nii.gz"):
        assert "medal_napari/" + f in names, f
    meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any("napari" in r for r in requires) and any("medal" in r for r in requires)
    assert not any(q in r for r in requires for q in ("PyQt", "PySide"))
    entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "napari-medal = medal_napari:napari.yaml" in entry and "medal-annotate" in entry
