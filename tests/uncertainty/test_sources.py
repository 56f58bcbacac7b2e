"""Uncertainty sources (MC dropout, committee, TTA, combinations), committee measures, calibration."""

import copy
import json

import numpy as np
import pytest
import torch

from medal.config import ModelConfig
from medal.model import build_model
from medal.uncertainty import expected_calibration_error, fit_temperature, kl_consensus, nll, vote_entropy
from medal.uncertainty.sources import SOURCES, flip_sets, predict_moments

CFG = ModelConfig(channels=(8, 16), strides=(2,), head_channels=8)


def _net(seed):
    torch.manual_seed(seed)
    net = build_model(CFG, out_channels=3)
    with torch.no_grad():  # a net with a definite opinion: larger output weights
        net.head_out.weight.mul_(20)
    return net


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_gives_probabilities_of_the_right_shape(source):
    img = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    nets = [_net(0), _net(1)] if source.startswith("committee") else _net(0)
    res = predict_moments(nets, img, source=source, n_samples=4, sample_batch=2, roi_size=(16, 16, 16),
                          tta_axes=(0, 2))
    assert res.mean_probs.shape == (3, 16, 16, 16)
    np.testing.assert_allclose(res.mean_probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(res.mean_vote.sum(0), 1.0, atol=1e-5)
    m = res.measures(["entropy", "bald", "vote_entropy", "kl_consensus", "variance"])
    assert all(v.shape == (16, 16, 16) and np.isfinite(v).all() and (v >= 0).all() for v in m.values())
    again = predict_moments(nets, img, source=source, n_samples=4, sample_batch=2, roi_size=(16, 16, 16),
                            tta_axes=(0, 2))
    np.testing.assert_array_equal(res.mean_probs, again.mean_probs)  # same seed, same result


def test_committee_agreement_and_disagreement():
    img = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    a = _net(3)
    same = predict_moments([a, copy.deepcopy(a)], img, source="committee", roi_size=(16, 16, 16)).measures(
        ["bald", "vote_entropy", "kl_consensus"])
    assert max(float(v.max()) for v in same.values()) < 1e-6  # identical members: no disagreement
    diff = predict_moments([a, _net(4)], img, source="committee", roi_size=(16, 16, 16)).measures(
        ["bald", "vote_entropy"])
    assert diff["bald"].mean() > 1e-3 and diff["vote_entropy"].max() > 0.5  # members that differ disagree
    with pytest.raises(ValueError, match="committee of at least 2"):
        predict_moments([a], img, source="committee", roi_size=(16, 16, 16))


def test_tta_makes_a_flip_symmetric_phantom_symmetric():
    """Averaging over every flip makes the predictor flip-equivariant, so a phantom symmetric under the
    flip gets a symmetric prediction, although a single pass of the (random) net is not symmetric."""
    rng = np.random.default_rng(2)
    half = rng.normal(size=(8, 16, 16)).astype(np.float32)
    img = np.concatenate([half, half[::-1]], axis=0)  # symmetric along axis 0
    net = _net(5)
    one = predict_moments(net, img, source="tta", tta_axes=(), roi_size=(16, 16, 16)).mean_probs
    tta = predict_moments(net, img, source="tta", tta_axes=(0,), roi_size=(16, 16, 16)).mean_probs
    assert np.abs(one - one[:, ::-1]).max() > 1e-3
    np.testing.assert_allclose(tta, tta[:, ::-1], atol=1e-5)
    assert flip_sets((0, 2)) == [(), (0,), (2,), (0, 2)]


def test_committee_measures_on_samples():
    p = np.zeros((4, 2, 1, 1, 2))
    p[:, 0, 0, 0, 0] = [0.9, 0.8, 0.2, 0.1]  # members split 2:2 on voxel 0
    p[:, 0, 0, 0, 1] = 0.7  # all agree on voxel 1
    p[:, 1] = 1 - p[:, 0]
    ve = vote_entropy(p)
    assert ve[0, 0, 0] == pytest.approx(np.log(2), rel=1e-5) and ve[0, 0, 1] == pytest.approx(0.0, abs=1e-7)
    kl = kl_consensus(p)
    assert kl[0, 0, 0] > 0.1 and kl[0, 0, 1] == pytest.approx(0.0, abs=1e-7)


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(size=(4000, 3)) * 1.5
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    over = true_logits * 3.0  # the network is three times too sure of itself
    t = fit_temperature(over, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    assert nll(over, labels, t) < nll(over, labels) - 0.1
    probs_before = np.exp(over) / np.exp(over).sum(1, keepdims=True)
    z = over / t
    probs_after = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert expected_calibration_error(probs_after, labels) < expected_calibration_error(probs_before, labels)


@pytest.mark.slow
def test_committee_from_snapshots_scores_byte_identically_when_resumed(tmp_path):
    """A committee is one checkpoint (snapshots saved along one run); `medal score` with it, killed
    half-way (here: one case's outputs deleted) and run again, ends with byte-identical files."""
    import hashlib
    import shutil
    import subprocess
    import sys

    import yaml

    from medal.data import sample_dataset
    from medal.model import load_committee

    cfg = {"model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
           "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 4, "iterations_per_epoch": 2,
                        "val_fraction": 0.2, "snapshots": 3, "num_threads": 1},
           "uncertainty": {"source": "committee", "mc_samples": 3, "roi_size": [16, 16, 16],
                           "measures": ["entropy", "vote_entropy"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = [sys.executable, "-m", "medal.cli"]
    out = subprocess.run([*run, "train", str(sample_dataset()), "--config", str(tmp_path / "c.yaml"),
                          "--out", str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    members = load_committee(tmp_path / "m.pt")
    assert len(members) == 3
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert 0.05 <= payload["meta"]["temperature"] <= 20  # fitted on the validation cases
    score = [*run, "score", str(sample_dataset()), "--checkpoint", str(tmp_path / "m.pt"), "--config",
             str(tmp_path / "c.yaml"), "--cases", "hippocampus_004", "hippocampus_006", "--workers", "1"]

    def digests(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.nii.gz"))}

    assert subprocess.run([*score, "--out", str(tmp_path / "full")], capture_output=True).returncode == 0
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")  # a finished run, then one case's outputs lost
    for p in (tmp_path / "resumed" / "scores" / "hippocampus_006").iterdir():
        p.unlink()
    out = subprocess.run([*score, "--out", str(tmp_path / "resumed")], capture_output=True, text=True)
    assert out.returncode == 0 and "1 scored, 1 already up to date" in out.stdout
    full, resumed = digests(tmp_path / "full"), digests(tmp_path / "resumed")
    assert full == resumed and "scores/hippocampus_006/vote_entropy.nii.gz" in full


@pytest.mark.parametrize("classes", [1, 3, 5])
def test_votes_and_entropy_match_argmax_and_the_definition(classes):
    """The elementwise vote (written because torch's channel argmax was 45% of MC scoring time) is
    argmax's one-hot, ties going to the first class; the entropy is -sum p log p."""
    from medal.uncertainty.sources import _probs_entropy_vote

    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(4, classes, 5, 6, 7, generator=g)
    if classes > 1:
        logits[:, 1, 0] = logits[:, 0, 0]  # exact ties: class 0 wins, as with argmax
        logits[:, 2:, 0] = -10.0
    p, h, vote = _probs_entropy_vote(logits, 1.5)
    full = torch.sigmoid(logits / 1.5) if classes == 1 else torch.softmax(logits / 1.5, dim=1)
    if classes == 1:
        full = torch.cat([1 - full, full], dim=1)
    torch.testing.assert_close(p, full)
    torch.testing.assert_close(h, -(full * torch.log(full.clamp_min(1e-12))).sum(1), atol=1e-5, rtol=1e-5)
    want = torch.nn.functional.one_hot(full.argmax(1), full.shape[1]).movedim(-1, 1).to(p.dtype)
    assert torch.equal(vote, want)
    if classes > 1:
        assert (vote[:, 0, 0] == 1).all()
