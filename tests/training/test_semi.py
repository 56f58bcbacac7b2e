"""Semi-supervised training: pseudo-labels never replace an expert's voxel, EMA teacher, determinism."""

import numpy as np
import pytest
import torch

from medal.config import ModelConfig, TrainingConfig, config_from_dict
from medal.data import load_dataset, load_volume, sample_dataset
from medal.model import build_model
from medal.training import TrainItem, train_model
from medal.training.semi import EMATeacher, propagation_mask, pseudo_targets, rampup, unlabeled_loss

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
    none = _train(semi_supervised="none")
    same = _train(semi_supervised="pseudo_label", pseudo_threshold=1.0)
    assert all(torch.equal(a, b) for a, b in zip(none, same))
    pl = _train(semi_supervised="pseudo_label", pseudo_threshold=0.5)
    assert not all(torch.equal(a, b) for a, b in zip(none, pl))  # confident voxels did teach something
    mt1, mt2 = _train(semi_supervised="mean_teacher"), _train(semi_supervised="mean_teacher")
    assert all(torch.equal(a, b) for a, b in zip(mt1, mt2))
    flipped = [_train(semi_supervised="mean_teacher", consistency_flip_axes=(2,)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*flipped))
    assert not all(torch.equal(a, b) for a, b in zip(mt1, flipped[0]))  # flips are off unless asked for


def test_pseudo_label_on_fully_annotated_cases_trains_exactly_as_none():
    """pseudo_label is medal's default; with every voxel annotated it has nothing to teach, so training
    skips the teacher and gives the weights of a fully supervised run (a partly annotated set does not)."""
    full = []
    for case in load_dataset(sample_dataset()).cases[:2]:
        img = load_volume(case.image).array.astype(np.float32)
        full.append(TrainItem(case.case_id, (img - img.mean()) / img.std(), load_volume(case.label).array.astype(np.uint8)))

    def run(items, mode):
        tcfg = TrainingConfig(patch_size=(16, 16, 16), batch_size=2, max_epochs=2, iterations_per_epoch=3,
                              val_fraction=0.0, seed=3, semi_supervised=mode, pseudo_threshold=0.5)
        res = train_model(items, [], n_classes=3, model_cfg=CFG, train_cfg=tcfg, progress=False)
        return [p.detach().clone() for p in res.net.parameters()]

    assert TrainingConfig().semi_supervised == "pseudo_label"
    assert all(torch.equal(a, b) for a, b in zip(run(full, "none"), run(full, "pseudo_label")))
    assert not all(torch.equal(a, b) for a, b in zip(run(_items(), "none"), run(_items(), "pseudo_label")))


def _propagation_reference(label, max_distance, margin):
    """Brute force over every pair of voxels: the rule of propagation_mask, written out."""
    pts = np.argwhere(np.ones(label.shape, bool)).astype(float)
    ann = label.ravel() != 255
    out = np.zeros(label.size, np.int64)
    for k, p in enumerate(pts):
        if ann[k]:
            continue
        d = np.sqrt(((pts[ann] - p) ** 2).sum(1))
        d_ann = d.min()
        if d_ann > max_distance:
            continue
        for c in np.unique(label.ravel()[ann]):
            if d[label.ravel()[ann] == c].min() <= d_ann + margin:
                out[k] |= 1 << int(c)
    return out.reshape(label.shape)


@pytest.mark.parametrize("max_distance,margin", [(1.0, 0.0), (2.0, 1.0), (3.5, 1.5)])
def test_propagation_mask_equals_a_loop_reference(max_distance, margin):
    rng = np.random.default_rng(int(10 * max_distance))
    label = np.full((5, 6, 7), 255, np.uint8)
    label[2] = rng.integers(0, 3, size=(6, 7))  # one annotated slice
    label[rng.random(label.shape) < 0.05] = 3  # and a few scattered voxels of another class
    got = propagation_mask(label, max_distance, margin)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got.astype(np.int64), _propagation_reference(label, max_distance, margin))
    assert not propagation_mask(np.full((3, 3, 3), 255, np.uint8), 5.0).any()  # nothing annotated, nothing allowed


def test_propagation_carries_an_annotated_slice_to_its_neighbours():
    label = np.full((12, 21, 21), 255, np.uint8)
    zz, yy = np.mgrid[:21, :21]
    label[5] = np.where((zz - 10) ** 2 + (yy - 10) ** 2 <= 16, 1, 0)  # a disc of class 1 (radius 4) in slice 5
    m = propagation_mask(label, 3.0, 1.0)
    bits = lambda z, y, x: {c for c in range(3) if m[z, y, x] >> c & 1}  # noqa: E731
    assert bits(6, 10, 10) == {1}  # inside the disc one slice on: its class, not background
    assert bits(6, 0, 0) == {0}  # far outside it: background only
    # the outline may move sqrt(2 d m + m^2) = 1.7 voxels one slice on: at the painted edge and one voxel
    # beyond it either class, two voxels beyond background only, two inside the foreground only
    assert bits(6, 10, 14) == {0, 1} and bits(6, 10, 15) == {0, 1} and bits(6, 10, 16) == {0}
    assert bits(6, 10, 12) == {1}
    assert bits(8, 10, 10) == {1} and bits(9, 10, 10) == set()  # up to 3 slices away, not 4
    assert not m[5].any()  # the expert's own slice: the supervised loss only
    # the loss targets follow: the teacher's confident class where allowed, ignored elsewhere
    lab = torch.from_numpy(label[None, 6].astype(np.int64))
    probs = torch.zeros(1, 3, 21, 21)
    probs[:, 1] = 0.95  # the teacher says class 1 everywhere, confidently
    probs[:, 0] = 0.05
    allowed = torch.from_numpy(m[None, 6].astype(np.int64))
    t = pseudo_targets(lab, probs, 0.9, allowed)
    assert t[0, 10, 10] == 1 and t[0, 0, 0] == 255 and t[0, 10, 16] == 255
    assert torch.equal(pseudo_targets(lab, probs, 0.9, torch.full_like(allowed, 7)), pseudo_targets(lab, probs, 0.9))
    assert (pseudo_targets(lab, probs, 0.9, torch.zeros_like(allowed)) == 255).all()


def test_propagation_limits_what_the_teacher_teaches_and_stays_deterministic():
    item = _items()[0]
    unlimited = propagation_mask(item.label, 1e6, 1e6)
    classes = np.unique(item.label[item.label != 255])
    free = item.label == 255
    assert (unlimited[free] == sum(1 << int(c) for c in classes)).all() and not unlimited[~free].any()
    plain = _train(semi_supervised="pseudo_label", pseudo_threshold=0.5)
    near = [_train(semi_supervised="pseudo_label", pseudo_threshold=0.5, pseudo_propagation=1.0) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*near))  # deterministic for a seed
    assert not all(torch.equal(a, b) for a, b in zip(plain, near[0]))  # fewer targets: other weights


def test_propagation_settings_are_checked_at_load():
    from medal.config import ConfigError

    cfg = config_from_dict({"training": {"semi_supervised": "pseudo_label", "pseudo_propagation": 2}})
    assert cfg.training.pseudo_propagation == 2 and cfg.training.pseudo_margin == 1.0
    # a variant may switch the mode of a config that propagates (simulation.variants): other modes ignore it
    cfg = config_from_dict({"training": {"semi_supervised": "pseudo_label", "pseudo_propagation": 2},
                            "simulation": {"variants": {"mt": {"training": {"semi_supervised": "mean_teacher"}}}}})
    assert cfg.simulation.variants["mt"]["training"]["semi_supervised"] == "mean_teacher"
    with pytest.raises(ConfigError, match="training.pseudo_propagation"):
        config_from_dict({"training": {"semi_supervised": "pseudo_label", "pseudo_margin": -1}})


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


@pytest.mark.parametrize("mode", ["pseudo_label", "mean_teacher"])
def test_each_mode_trains_in_bf16_deterministically_and_not_as_fp32(mode):
    """training.precision bf16 with the teacher in the loop (partial labels): fp32 weights, reproducible for a
    seed, finite, and not the fp32 run's weights (the autocast reached the forward pass)."""
    kw = {"semi_supervised": mode, "pseudo_threshold": 0.5}
    a, b = _train(precision="bf16", **kw), _train(precision="bf16", **kw)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, _train(**kw)))
