"""Semi-supervised training: pseudo-labels never replace an expert's voxel, EMA teacher, determinism."""

import numpy as np
import pytest
import torch

from medal.config import ModelConfig, TrainingConfig, config_from_dict
from medal.data import load_dataset, load_volume, sample_dataset
from medal.model import build_model
from medal.training import TrainItem, train_model
from medal.training.semi import EMATeacher, pseudo_targets, rampup, unlabeled_loss

CFG = ModelConfig(channels=(8, 16), strides=(2,), head_channels=8)


def test_pseudo_labels_never_stand_in_for_an_expert_voxel():
    labels = torch.tensor([[0, 1, 255, 255, 2]])
    probs = torch.tensor([[[0.05, 0.9, 0.05], [0.95, 0.03, 0.02], [0.02, 0.97, 0.01], [0.6, 0.3, 0.1],
                           [0.9, 0.05, 0.05]]]).permute(0, 2, 1)  # (B, C, N)
    t = pseudo_targets(labels, probs, 0.9)
    # annotated voxels (0: expert says 0, teacher says 1 with 0.9; 4: expert 2, teacher 0 with 0.9) stay
    # out of the pseudo-label targets; unannotated: confident -> its class, unsure -> ignored
    assert t.tolist() == [[255, 255, 1, 255, 255]]
    logits = torch.randn(1, 3, 5, requires_grad=True)
    loss = unlabeled_loss("pseudo_label", logits, probs, labels, threshold=0.9)
    loss.backward()
    grad = logits.grad.abs().sum(dim=1)[0]
    assert grad[2] > 0 and (grad[[0, 1, 3, 4]] == 0).all()  # only the confident unannotated voxel pulls
    assert unlabeled_loss("pseudo_label", logits, probs, labels, threshold=1.0) is None
    mt = unlabeled_loss("mean_teacher", logits, probs, labels)
    logits.grad = None
    mt.backward()
    grad = logits.grad.abs().sum(dim=1)[0]
    assert (grad[[2, 3]] > 0).all() and (grad[[0, 1, 4]] == 0).all()


def test_ema_teacher_follows_its_decay():
    student = build_model(CFG, out_channels=3)
    teacher = EMATeacher(student, decay=0.9)
    before = [p.clone() for p in teacher.net.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)
    for b, t, s in zip(before, teacher.net.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    assert not any(p.requires_grad for p in teacher.net.parameters())
    assert rampup(0, 100, 0.3) == pytest.approx(np.exp(-5)) and rampup(30, 100, 0.3) == 1.0 and rampup(5, 100, 0) == 1.0


def _items():
    ds = load_dataset(sample_dataset())
    out = []
    for case in ds.cases[:2]:
        img = load_volume(case.image).array.astype(np.float32)
        img = (img - img.mean()) / img.std()
        lab = load_volume(case.label).array.astype(np.uint8)
        part = np.full(lab.shape, 255, np.uint8)
        part[:, :, ::5] = lab[:, :, ::5]  # a few slices annotated, the rest free for the teacher
        out.append(TrainItem(case.case_id, img, part))
    return out


def _train(**kw):
    tcfg = TrainingConfig(patch_size=(16, 16, 16), batch_size=2, max_epochs=2, iterations_per_epoch=3,
                          val_fraction=0.0, seed=3, **kw)
    res = train_model(_items(), [], n_classes=3, model_cfg=CFG, train_cfg=tcfg, progress=False)
    return [p.detach().clone() for p in res.net.parameters()]


def test_threshold_one_is_exactly_supervised_and_modes_are_deterministic():
    none = _train()
    same = _train(semi_supervised="pseudo_label", pseudo_threshold=1.0)
    assert all(torch.equal(a, b) for a, b in zip(none, same))
    pl = _train(semi_supervised="pseudo_label", pseudo_threshold=0.5)
    assert not all(torch.equal(a, b) for a, b in zip(none, pl))  # confident voxels did teach something
    mt1, mt2 = _train(semi_supervised="mean_teacher"), _train(semi_supervised="mean_teacher")
    assert all(torch.equal(a, b) for a, b in zip(mt1, mt2))
    flipped = [_train(semi_supervised="mean_teacher", consistency_flip_axes=(2,)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*flipped))
    assert not all(torch.equal(a, b) for a, b in zip(mt1, flipped[0]))  # flips are off unless asked for


def test_consistency_flip_axes_are_checked_at_load():
    from medal.config import ConfigError

    assert config_from_dict({"training": {"consistency_flip_axes": [0, 2]}}).training.consistency_flip_axes == (0, 2)
    with pytest.raises(ConfigError, match="training.consistency_flip_axes"):
        config_from_dict({"training": {"consistency_flip_axes": [3]}})


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pseudo_label", "mean_teacher"])
def test_two_round_simulation_with_each_mode(tmp_path, mode):
    import json

    from medal.simulation import read_results, simulate

    cfg = config_from_dict({
        "model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
        "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 3,
                     "val_fraction": 0.0, "semi_supervised": mode, "pseudo_threshold": 0.6, "num_threads": 1},
        "uncertainty": {"mc_samples": 2, "roi_size": [16, 16, 16]},
        "selection": {"budget_s": 400.0},
        "simulation": {"strategies": ["random"], "seeds": [0], "rounds": 1, "initial_budget_s": 200.0,
                       "test_fraction": 0.1, "max_pool": 3}})
    csv_path = simulate(load_dataset(sample_dataset()), tmp_path / "sim", cfg, log=None)
    rows = read_results(csv_path)
    assert len(rows) == 2 and all(0 <= r["dice_mean"] <= 1 for r in rows)
    man = json.loads((tmp_path / "sim" / "random" / "seed_0" / "round_000" / "manifest.json").read_text())
    assert man["config"]["training"]["semi_supervised"] == mode  # the manifest records the mode
