import json
import subprocess
import sys

import numpy as np
import torch

from medal.config import DataConfig, UncertaintyConfig
from medal.data import load_dataset, load_volume, sample_dataset
from medal.model import build_model, save_checkpoint
from medal.uncertainty.score import score_cases

CFG = UncertaintyConfig(mc_samples=4, measures=("entropy", "bald", "variance"), sample_batch=2)


def test_score_volumes_carry_the_image_affine_and_failures_are_isolated(tmp_path, tiny_model_cfg, phantom_dataset):
    torch.manual_seed(0)
    net = build_model(tiny_model_cfg, out_channels=3)
    ds = load_dataset(phantom_dataset)
    # make the middle case unreadable: it must be reported, the others scored
    bad = ds.cases[1].image
    bad.write_bytes(bad.read_bytes()[:100])
    report = score_cases(net, ds.cases, tmp_path / "run", cfg=CFG, data_cfg=DataConfig(), progress=False)
    assert set(report.scored) == {"phantom_000", "phantom_002"}
    assert "phantom_001" in report.failures and "truncated" in report.failures["phantom_001"]
    for cid in report.scored:
        image = load_volume(ds.case(cid).image)
        pred = load_volume(tmp_path / "run" / "scores" / cid / "prediction.nii.gz")
        assert pred.array.dtype == np.uint8 and pred.shape == image.shape
        np.testing.assert_array_equal(pred.affine, image.affine)
        for m in CFG.measures:
            vol = load_volume(tmp_path / "run" / "scores" / cid / f"{m}.nii.gz")
            assert vol.array.dtype == np.float32 and vol.shape == image.shape
            np.testing.assert_array_equal(vol.affine, image.affine)
            assert np.isfinite(vol.array).all() and vol.array.min() >= 0
    manifest = json.loads((tmp_path / "run" / "scores" / "scores.json").read_text())
    assert manifest["uncertainty"]["mc_samples"] == 4 and "phantom_001" in manifest["failures"]


def test_medal_train_and_score_cli(tmp_path, tiny_model_cfg):
    import yaml

    cfg = {
        "model": {"channels": [8, 16, 32], "strides": [2, 2], "head_channels": 8},
        "training": {"patch_size": [16, 32, 16], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 2},
        "uncertainty": {"mc_samples": 3, "measures": ["entropy", "bald"]},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = [sys.executable, "-m", "medal.cli"]
    out = subprocess.run([*run, "train", str(sample_dataset()), "--config", str(tmp_path / "c.yaml"),
                          "--out", str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["epochs"] == 1
    out = subprocess.run([*run, "score", str(sample_dataset()), "--checkpoint", str(tmp_path / "m.pt"),
                          "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"),
                          "--cases", "hippocampus_004", "hippocampus_006"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "scores" / "hippocampus_004").iterdir()) == [
        "bald.nii.gz", "entropy.nii.gz", "key.json", "prediction.nii.gz", "probs.nii.gz"]
    # a checkpoint of another model config is refused with a message naming the file
    other = dict(cfg, model={**cfg["model"], "dropout": 0.4})
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(other))
    out = subprocess.run([*run, "train", str(sample_dataset()), "--config", str(tmp_path / "d.yaml"),
                          "--init", str(tmp_path / "m.pt"), "--out", str(tmp_path / "n.pt")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "m.pt: model config does not match" in out.stderr
