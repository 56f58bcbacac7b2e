import dataclasses

import numpy as np
import pytest
import torch

from medal.config import DataConfig, TrainingConfig
from medal.data import UNLABELED, load_dataset, sample_dataset
from medal.model import CheckpointError, build_model, load_checkpoint
from medal.training import (AnnotatedIndex, TrainItem, crop_patch, dice_per_class, masked_dice_ce, prepare_items,
                            sample_patch, split_items, train_model)
from medal.training.trainer import validate

FAST = TrainingConfig(patch_size=(16, 32, 16), batch_size=2, max_epochs=1, iterations_per_epoch=3, patience=3)


def test_unannotated_voxels_have_no_effect_on_loss_or_gradient():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 6, 6, 6))
    target[:, :, :, 3:] = UNLABELED  # only half of each volume is annotated
    logits = torch.randn(2, 3, 6, 6, 6, requires_grad=True)
    loss = masked_dice_ce(logits, target)
    loss.backward()
    grad = logits.grad
    assert grad[..., 3:].abs().max() == 0  # not one unannotated voxel pulls on the network
    assert grad[..., :3].abs().max() > 0
    # whatever the network predicts there (deliberately wrong, huge logits) the loss is the same
    wild = logits.detach().clone()
    wild[..., 3:] = torch.randn_like(wild[..., 3:]) * 100
    torch.testing.assert_close(masked_dice_ce(wild, target), loss.detach())
    # the control: had those voxels carried wrong labels instead of 255, the loss would change
    wrong = target.clone()
    wrong[..., 3:] = 2
    assert not torch.isclose(masked_dice_ce(logits.detach(), wrong), loss.detach())


def test_nothing_annotated_gives_zero_loss_with_a_graph():
    logits = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    loss = masked_dice_ce(logits, torch.full((1, 4, 4, 4), UNLABELED))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad.abs().max() == 0


def test_patches_always_contain_annotated_voxels():
    label = np.full((30, 40, 20), UNLABELED, np.uint8)
    label[:, :, 7] = 0
    label[10:14, 10:15, 7] = 1  # one painted slice with a little foreground
    image = np.random.default_rng(0).normal(size=label.shape).astype(np.float32)
    idx = AnnotatedIndex(label)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x, y = sample_patch(image, label, idx, (16, 16, 16), rng, foreground_fraction=0.5)
        assert x.shape == y.shape == (16, 16, 16)
        assert (y != UNLABELED).any()
    with pytest.raises(ValueError, match="no annotated voxel"):
        sample_patch(image, np.full_like(label, UNLABELED), AnnotatedIndex(np.full_like(label, UNLABELED)),
                     (8, 8, 8), rng)


def test_crop_pads_outside_the_volume():
    a = np.arange(27).reshape(3, 3, 3)
    out = crop_patch(a, (-1, 1, 2), (3, 3, 3), fill=-5)
    assert out[0].max() == -5 and out[1, 0, 0] == a[0, 1, 2]


def test_dice_per_class_ignores_unannotated():
    t = np.array([0, 1, 1, 2, UNLABELED, UNLABELED])
    p = np.array([0, 1, 0, 2, 1, 2])
    np.testing.assert_allclose(dice_per_class(p, t, 3), [2 / 3, 1.0])


def _real_items(n, tiny=True):
    ds = load_dataset(sample_dataset())
    return prepare_items(ds, DataConfig(), case_ids={c.case_id for c in ds.cases[:n]})


def test_slice_only_volume_trains(tiny_model_cfg):
    items = _real_items(1)
    lab = np.full_like(items[0].label, UNLABELED)
    z = items[0].label.shape[2] // 2
    lab[:, :, z] = items[0].label[:, :, z]
    sparse = TrainItem(items[0].case_id, items[0].image, lab)
    res = train_model([sparse], [], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=FAST, progress=False)
    assert len(res.history) == 1 and np.isfinite(res.history[0]["loss"]) and res.history[0]["loss"] > 0


def test_same_seed_same_weights(tiny_model_cfg):
    items = _real_items(2)
    a = train_model(items, [], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=FAST, progress=False).net
    b = train_model(items, [], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=FAST, progress=False).net
    c = train_model(items, [], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=dataclasses.replace(FAST, seed=1),
                    progress=False).net
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.slow
def test_few_epochs_on_two_real_cases_beat_an_untrained_net(tiny_model_cfg, tmp_path):
    items = _real_items(3)
    train, val = items[:2], items[2:]
    cfg = dataclasses.replace(FAST, patch_size=(32, 48, 32), max_epochs=4, iterations_per_epoch=15, patience=10)
    torch.manual_seed(0)
    untrained = validate(build_model(tiny_model_cfg, out_channels=3), val, 3, roi_size=(32, 48, 32), device="cpu")
    res = train_model(train, val, n_classes=3, model_cfg=tiny_model_cfg, train_cfg=cfg, progress=False,
                      checkpoint=tmp_path / "m.pt")
    assert res.best_val_dice > untrained + 0.2, (res.best_val_dice, untrained)
    assert res.best_val_dice == max(r["val_dice"] for r in res.history)
    # the checkpoint holds the best epoch's weights and the run's history
    net, _, payload = load_checkpoint(res.checkpoint, expected=tiny_model_cfg)
    assert payload["meta"]["best_epoch"] == res.best_epoch
    assert validate(net, val, 3, roi_size=(32, 48, 32), device="cpu") == pytest.approx(res.best_val_dice, abs=1e-6)
    # warm start begins from those weights: a learning rate of ~0 leaves them as they were
    warm = train_model(train, [], n_classes=3, model_cfg=tiny_model_cfg, init=res.checkpoint, progress=False,
                       train_cfg=dataclasses.replace(FAST, learning_rate=1e-20, iterations_per_epoch=1))
    ws, cs = warm.net.state_dict(), net.state_dict()
    assert all(torch.allclose(ws[k].float(), cs[k].float(), atol=1e-6) for k in cs)
    with pytest.raises(CheckpointError, match="does not match"):
        train_model(train, [], n_classes=3, model_cfg=dataclasses.replace(tiny_model_cfg, dropout=0.5),
                    init=res.checkpoint, train_cfg=FAST, progress=False)


def test_split_is_deterministic():
    items = list(range(10))
    a, b = split_items(items, 0.2, 3), split_items(items, 0.2, 3)
    assert a == b and len(a[1]) == 2 and sorted(a[0] + a[1]) == items
    assert split_items([1], 0.5, 0) == ([1], [])


def test_patch_size_must_fit_strides(tiny_model_cfg):
    items = _real_items(1)
    with pytest.raises(ValueError, match=r"multiple of \[4, 4, 4\] per axis"):
        train_model(items, [], n_classes=3, model_cfg=tiny_model_cfg, progress=False,
                    train_cfg=dataclasses.replace(FAST, patch_size=(18, 32, 16)))


def test_per_axis_strides_pool_a_thick_axis_later(tiny_model_cfg, tmp_path):
    """model.strides with a triple per stage (nnU-Net-style pooling of an anisotropic axis): sizes must be multiples
    of the per-axis products (checked when the config loads, naming the key); the net trains on real cases, predicts
    a whole case at its own shape and its checkpoint loads back under the same config."""
    from medal.config import ConfigError, load_config
    from medal.model import load_checkpoint
    from medal.uncertainty.inference import predict_probs

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  channels: [8, 16, 32]\n  strides: [[2, 2, 1], 2]\n  head_channels: 8\n"
                    "training:\n  patch_size: [16, 32, 8]\nuncertainty:\n  roi_size: [16, 32, 8]\n")
    cfg = load_config(path)
    assert cfg.model.strides == ((2, 2, 1), 2) and cfg.model.divisors == (4, 4, 2)
    path.write_text("model:\n  channels: [8, 16, 32]\n  strides: [[2, 2, 1], 2]\n"
                    "training:\n  patch_size: [16, 32, 8]\nuncertainty:\n  roi_size: [16, 30, 8]\n")
    with pytest.raises(ConfigError, match=r"uncertainty.roi_size: \[16, 30, 8\] must be a multiple of \[4, 4, 2\]"):
        load_config(path)
    items = _real_items(3)
    res = train_model(items[:2], items[2:], n_classes=3, model_cfg=cfg.model, progress=False,
                      train_cfg=dataclasses.replace(FAST, patch_size=(16, 32, 8)), checkpoint=tmp_path / "m.pt")
    assert res.best_val_dice is not None and np.isfinite(res.history[-1]["loss"])
    net, _, _ = load_checkpoint(tmp_path / "m.pt", expected=cfg.model)
    probs = predict_probs(net, items[2].image, roi_size=(16, 32, 8))
    assert probs.shape == (3, *items[2].image.shape) and np.allclose(probs.sum(0), 1, atol=1e-4)


def test_auto_strides_are_planned_from_the_spacing_stored_and_kept_by_a_warm_start(tiny_model_cfg, tmp_path):
    """model.strides: auto: planned by nnU-Net's rule from the spacing the net trains at and the patch (1 x 1 x 3 mm:
    the thick last axis joins the pooling one stage later; isotropic: 2 everywhere), stored in the checkpoint; an
    auto config loads any planned checkpoint, a config with other strides is refused naming the key; a warm start
    keeps its model's strides whatever the spacing; a checkpoint is never written under strides its net was not
    built with (strides do not change weight shapes)."""
    from medal.model import CheckpointError, build_model, load_checkpoint, save_checkpoint

    auto = dataclasses.replace(tiny_model_cfg, strides="auto")
    assert auto.divisors == (4, 4, 4)  # what a config must allow for any plan: 2 per stage
    assert auto.planned().strides == (2, 2) and auto.planned((1.0, 1.0, 3.0), (16, 32, 16)).strides == ((2, 2, 1), 2)
    assert auto.planned((1, 1, 1), (16, 32, 8)).strides == (2, (2, 2, 1))  # no axis pooled below 4 voxels
    items = _real_items(3)
    cfg = dataclasses.replace(FAST, patch_size=(16, 32, 8))
    res = train_model(items[:2], items[2:], n_classes=3, model_cfg=auto, progress=False, train_cfg=cfg,
                      plan_spacing=(1.0, 1.0, 3.0), checkpoint=tmp_path / "m.pt")
    assert res.model_cfg.strides == ((2, 2, 1), 2)
    net, stored, _ = load_checkpoint(tmp_path / "m.pt", expected=auto)
    assert stored.strides == ((2, 2, 1), 2) and net.model_cfg == stored
    load_checkpoint(tmp_path / "m.pt", expected=res.model_cfg)
    with pytest.raises(CheckpointError, match=r"strides: checkpoint \[\[2, 2, 1\], 2\] vs expected \[2, 2\]"):
        load_checkpoint(tmp_path / "m.pt", expected=tiny_model_cfg)
    warm = train_model(items[:2], [], n_classes=3, model_cfg=auto, progress=False, train_cfg=cfg,
                       init=tmp_path / "m.pt", plan_spacing=(1.0, 1.0, 1.0), checkpoint=tmp_path / "w.pt")
    assert warm.model_cfg.strides == ((2, 2, 1), 2)
    assert load_checkpoint(tmp_path / "w.pt")[1].strides == ((2, 2, 1), 2)
    iso = build_model(auto, out_channels=3)
    assert iso.model_cfg.strides == (2, 2)
    with pytest.raises(ValueError, match="built from another model config"):
        save_checkpoint(tmp_path / "x.pt", iso, res.model_cfg, in_channels=1, out_channels=3)
    save_checkpoint(tmp_path / "x.pt", iso, auto, in_channels=1, out_channels=3)
    assert load_checkpoint(tmp_path / "x.pt")[1].strides == (2, 2)


@pytest.mark.slow
def test_bf16_mixed_precision_learns_as_fp32_does_and_keeps_fp32_weights(tiny_model_cfg, tmp_path):
    """training.precision bf16: forward and loss under autocast (here on the CPU, the same code path as a GPU's):
    the weights and checkpoint stay fp32, the run learns as the fp32 run does, but it is not the fp32 run."""
    from medal.config import ConfigError

    items = _real_items(3)
    train, val = items[:2], items[2:]
    cfg = dataclasses.replace(FAST, patch_size=(24, 40, 24), max_epochs=4, iterations_per_epoch=15, patience=10)
    res = {p: train_model(train, val, n_classes=3, model_cfg=tiny_model_cfg, progress=False,
                          train_cfg=dataclasses.replace(cfg, precision=p), checkpoint=tmp_path / f"{p}.pt")
           for p in ("fp32", "bf16")}
    s32, s16 = res["fp32"].net.state_dict(), res["bf16"].net.state_dict()
    assert all(t.dtype == torch.float32 for t in s16.values() if t.is_floating_point())
    assert not all(torch.equal(s32[k], s16[k]) for k in s32)  # autocast changed the arithmetic
    loss32, loss16 = ([r["loss"] for r in res[p].history] for p in ("fp32", "bf16"))
    assert all(np.isfinite(loss16)) and loss16[-1] < loss16[0]
    assert loss16[-1] == pytest.approx(loss32[-1], rel=0.15)
    assert res["bf16"].best_val_dice > 0.3 and res["bf16"].best_val_dice == pytest.approx(res["fp32"].best_val_dice, abs=0.1)
    net, _, _ = load_checkpoint(tmp_path / "bf16.pt", expected=tiny_model_cfg)
    assert next(net.parameters()).dtype == torch.float32
    with pytest.raises(ConfigError, match="training.precision"):
        TrainingConfig(precision="fp16")


def test_a_large_validation_case_is_validated_on_fixed_windows_around_its_labels(tiny_model_cfg):
    """training.val_whole_max_voxels: a case above it is validated on windows placed as training patches are (the
    same ones every epoch and run), its Dice over their annotated voxels, equal to dice_per_class over the windows'
    voxels taken one at a time; smaller cases and 0 keep the whole-volume sliding window."""
    from medal.config import ConfigError
    from medal.training.trainer import validation_windows
    from medal.uncertainty.inference import predict_probs

    items = _real_items(3)
    big, small = items[0], items[1]
    roi = (16, 32, 16)
    n_vox = int(np.prod(roi))
    lab = big.label.copy()
    lab[:, :, ::2] = UNLABELED  # partial labels: windows must still hold annotated voxels
    big = TrainItem(big.case_id, big.image, lab)
    limit = (big.label.size + small.label.size) // 2
    assert small.label.size < limit < big.label.size
    windows = validation_windows([big, small], roi, max_whole_voxels=limit, window_voxels=5 * n_vox + 7, seed=3)
    assert list(windows) == [big.case_id] and len(windows[big.case_id]) == 5
    again = validation_windows([big, small], roi, max_whole_voxels=limit, window_voxels=5 * n_vox, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(windows[big.case_id], again[big.case_id]))
    other = validation_windows([big], roi, max_whole_voxels=limit, window_voxels=5 * n_vox, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(windows[big.case_id], other[big.case_id]))
    assert validation_windows([big], roi, max_whole_voxels=0, window_voxels=5 * n_vox) == {}
    labs = [crop_patch(big.label, s, roi, fill=UNLABELED) for s in windows[big.case_id]]
    assert all((t != UNLABELED).any() for t in labs) and sum(((t > 0) & (t != UNLABELED)).any() for t in labs) >= 2
    net = train_model([small], [], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=FAST, progress=False).net
    net.eval()
    with torch.no_grad():
        preds = [net(torch.from_numpy(crop_patch(big.image, s, roi, fill=0.0)[None, None].astype(np.float32)))
                 .argmax(1)[0].numpy() for s in windows[big.case_id]]
    ref = dice_per_class(np.concatenate([p.ravel() for p in preds]), np.concatenate([t.ravel() for t in labs]), 3)
    got = validate(net, [big], 3, roi_size=roi, device="cpu", windows=windows, batch_size=2)
    assert got == pytest.approx(float(ref.mean()), abs=1e-12)
    whole = validate(net, [big], 3, roi_size=roi, device="cpu")
    assert whole == pytest.approx(dice_per_class(
        predict_probs(net, big.image, roi_size=roi).argmax(0), big.label, 3).mean(), abs=1e-12)
    # weighted (the default in a run): each voxel 1 / (n q), q its chance to be in one window -- the whole volume's
    # counts estimated; the same windows' predictions summed with those weights one window at a time
    from medal.training.metrics import dice_counts, dice_from_counts
    from medal.training.sampling import window_coverage
    from medal.training.trainer import validation_weights

    weights = validation_weights([big, small], windows, roi)
    assert list(weights) == [big.case_id] and len(weights[big.case_id]) == 5
    q = window_coverage(big.index, roi)
    counts = sum(dice_counts(p, t, 3, weights=1.0 / (5 * crop_patch(q, s, roi, fill=1.0).astype(np.float64)))
                 for p, t, s in zip(preds, labs, windows[big.case_id]))
    got_w = validate(net, [big], 3, roi_size=roi, device="cpu", windows=windows, batch_size=2, weights=weights)
    assert got_w == pytest.approx(float(dice_from_counts(counts).mean()), abs=1e-6) and got_w != pytest.approx(got)
    # in a run: the config's threshold picks the windows; the history has their Dice
    cfg = dataclasses.replace(FAST, patch_size=roi, val_whole_max_voxels=limit, val_window_voxels=3 * n_vox)
    res = train_model([small], [big], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=cfg, progress=False)
    assert 0.0 <= res.history[0]["val_dice"] <= 1.0
    # ... and the round's temperature is fitted on the same windows' annotated voxels, not on the whole case
    assert res.calibration["voxels"] <= 3 * n_vox < int((big.label != UNLABELED).sum())
    with pytest.raises(ConfigError, match="val_whole_max_voxels"):
        TrainingConfig(val_whole_max_voxels=-1)
    # windows stay inside the volume, as a sliding window's do (one hanging over the edge saw zero padding)
    assert all((s >= 0).all() and (s + roi <= np.asarray(big.label.shape)).all() for s in windows[big.case_id])
    # the windows' temperature: that of the annotated voxels they cover, each once, its logits the Gaussian-weighted
    # mean over the windows covering it (a dense accumulation over the volume, one window at a time)
    from monai.data.utils import compute_importance_map

    from medal.training.trainer import validation_calibration
    from medal.uncertainty.calibration import fit_temperature

    gauss = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).numpy().astype(np.float64)
    acc, wsum = np.zeros((3, *big.label.shape)), np.zeros(big.label.shape)
    with torch.no_grad():
        for s in windows[big.case_id]:
            lg = net(torch.from_numpy(crop_patch(big.image, s, roi, fill=0.0)[None, None].astype(np.float32)))[0]
            box = tuple(slice(int(a), int(a) + r) for a, r in zip(s, roi))
            acc[(slice(None), *box)] += lg.numpy() * gauss
            wsum[box] += gauss
    seen = (wsum > 0) & (big.label != UNLABELED)
    z, y = (acc[:, seen] / wsum[seen]).T, big.label[seen]
    cal = validation_calibration(net, [big], roi_size=roi, device="cpu", windows=windows, max_voxels=10**9,
                                 batch_size=2)
    assert cal["voxels"] == len(y) < sum(int((t != UNLABELED).sum()) for t in labs)  # shared voxels count once
    assert cal["temperature"] == pytest.approx(fit_temperature(z, y), rel=1e-6)
    whole_cal = validation_calibration(net, [big], roi_size=roi, device="cpu", max_voxels=10**9)
    assert whole_cal["voxels"] == int((big.label != UNLABELED).sum())


@pytest.mark.parametrize("painted", ["all", "slices"])
def test_the_compact_index_draws_the_patches_an_int64_index_draws(painted):
    """AnnotatedIndex keeps int32 indices and, for a fully annotated volume, none at all (AllIndices: a 52 M-voxel
    CT's int64 index was 400 MB, twice its image): the patches drawn must be those of the int64 arrays."""
    from types import SimpleNamespace

    from medal.training.sampling import AllIndices, patch_start

    label = _real_items(1)[0].label.copy()
    if painted == "slices":
        label[:, :, 1::3] = UNLABELED
    idx = AnnotatedIndex(label)
    flat = label.ravel()
    ref = SimpleNamespace(shape=label.shape, annotated=np.flatnonzero(flat != UNLABELED),
                          foreground=np.flatnonzero((flat != UNLABELED) & (flat > 0)), empty=False)
    assert isinstance(idx.annotated, AllIndices) == (painted == "all")
    assert idx.foreground.dtype == np.int32 and np.array_equal(idx.foreground, ref.foreground)
    assert len(idx.annotated) == ref.annotated.size and idx.annotated[ref.annotated.size - 1] == ref.annotated[-1]
    for fraction in (0.0, 0.5, 1.0):
        a, b = np.random.default_rng(7), np.random.default_rng(7)
        for _ in range(200):
            assert np.array_equal(patch_start(idx, (16, 32, 16), a, foreground_fraction=fraction),
                                  patch_start(ref, (16, 32, 16), b, foreground_fraction=fraction))
    with pytest.raises(IndexError):
        AllIndices(3)[3]


@pytest.mark.parametrize("fraction, painted", [(0.0, "partly"), (0.5, "partly"), (1.0, "partly"), (0.5, "all")])
def test_window_coverage_is_each_voxels_chance_to_be_in_a_window_and_its_weights_count_the_whole_volume(fraction,
                                                                                                      painted):
    """window_coverage against a loop over every centre and offset patch_start can draw (then clipped inside the
    volume, as validation windows are; one axis shorter than the window); counts of one such window weighted
    1 / coverage have the whole volume's counts as expectation (Hansen-Hurwitz), the weighted validation Dice's
    ground."""
    from medal.training.metrics import dice_counts
    from medal.training.sampling import AllIndices, window_coverage

    label = _real_items(1)[0].label
    fg = np.argwhere(label > 0).mean(0).astype(int)
    label = label[fg[0] - 6:fg[0] + 6, fg[1] - 5:fg[1] + 5, fg[2] - 3:fg[2] + 4].copy()  # 12 x 10 x 7, real anatomy
    if painted == "partly":
        label[:2] = UNLABELED
        label[:, :, 5] = UNLABELED
    assert (label == 1).any() and (label == 2).any() and (label == 0).any()
    size = (6, 4, 8)
    idx = AnnotatedIndex(label)
    assert isinstance(idx.annotated, AllIndices) == (painted == "all")  # the uniform part's separable path
    q = window_coverage(idx, size, foreground_fraction=fraction)
    pred = np.random.default_rng(0).integers(0, 3, label.shape)
    centre = np.zeros(label.size)
    centre[idx.annotated] += (1 - fraction) / idx.annotated.size
    centre[idx.foreground] += fraction / idx.foreground.size
    high = np.maximum(np.subtract(label.shape, size), 0)
    offsets = [range(s // 2 - s // 4, s // 2 + s // 4 + 1) for s in size]
    n_off = np.prod([len(o) for o in offsets])
    ref, expected = np.zeros(label.shape), np.zeros((3, 3))
    for c in np.flatnonzero(centre):
        for off in np.stack(np.meshgrid(*offsets, indexing="ij"), -1).reshape(-1, 3):
            p = centre[c] / n_off
            s = np.clip(np.array(np.unravel_index(c, label.shape)) - off, 0, high)
            box = tuple(slice(a, a + b) for a, b in zip(s, size))
            ref[box] += p
            lab = crop_patch(label, s, size, fill=UNLABELED)
            w = 1.0 / crop_patch(q, s, size, fill=1.0).astype(np.float64)
            expected += p * dice_counts(crop_patch(pred, s, size, fill=0), lab, 3, weights=w)
    np.testing.assert_allclose(q, ref, rtol=1e-5, atol=1e-7)
    assert q.dtype == np.float32 and q.max() <= 1 + 1e-6 and (q[label != UNLABELED] > 0).all()
    np.testing.assert_allclose(expected, dice_counts(pred, label, 3), rtol=1e-4)
    # per window (what validation keeps: no copy of the volume), starts inside, clipped and hanging over the edge
    starts = [np.array([0, 0, 0]), np.array([6, 6, 0]), np.array([-2, 7, -3]), np.array([9, 3, 1])]
    for st, w in zip(starts, window_coverage(idx, size, foreground_fraction=fraction, starts=starts)):
        np.testing.assert_allclose(w, crop_patch(q, st, size, fill=1.0), rtol=1e-5, atol=1e-8)
    # weights of one: the integer counts
    assert np.array_equal(dice_counts(pred, label, 3, weights=np.ones(label.shape)), dice_counts(pred, label, 3))
    if fraction == 1.0:  # no foreground: every window on any annotated voxel, whatever the fraction
        bg = np.where(label == UNLABELED, UNLABELED, 0).astype(label.dtype)
        np.testing.assert_allclose(window_coverage(AnnotatedIndex(bg), size, foreground_fraction=fraction),
                                   window_coverage(AnnotatedIndex(bg), size, foreground_fraction=0.0))


def test_cases_beyond_items_in_memory_gb_are_read_by_memory_map_and_train_the_same_weights(tiny_model_cfg, tmp_path):
    """training.items_in_memory_gb: cases past the limit are written to scratch_dir and memory-mapped (read-only,
    nothing left in the folder), hold the same arrays, and a seeded run on them ends with the same weights and
    validation Dice as on the arrays in RAM; ``None`` keeps everything in RAM."""
    from medal.training import mapped_items

    ds = load_dataset(sample_dataset())
    ids = {c.case_id for c in ds.cases[:3]}
    ram = prepare_items(ds, DataConfig(), case_ids=ids)
    assert mapped_items(ram) == 0 and mapped_items(prepare_items(ds, DataConfig(), case_ids=ids, in_memory_gb=None)) == 0
    first = (ram[0].image.nbytes + ram[0].label.nbytes) / 1e9
    scratch = tmp_path / "scratch"
    part = prepare_items(ds, DataConfig(), case_ids=ids, in_memory_gb=first * 1.5, scratch_dir=scratch)
    assert [isinstance(i.image, np.memmap) for i in part] == [False, True, True]
    mapped = prepare_items(ds, DataConfig(), case_ids=ids, in_memory_gb=0, scratch_dir=scratch)
    assert mapped_items(mapped) == 3 and list(scratch.iterdir()) == []  # removed once mapped
    for a, b in zip(ram, mapped):
        assert isinstance(b.label, np.memmap) and not b.image.flags.writeable
        assert a.case_id == b.case_id and a.image.dtype == b.image.dtype and a.label.dtype == b.label.dtype
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    cfg = dataclasses.replace(FAST, max_epochs=2, iterations_per_epoch=4)
    runs = [train_model(items[:2], items[2:], n_classes=3, model_cfg=tiny_model_cfg, train_cfg=cfg, progress=False)
            for items in (ram, mapped)]
    s_ram, s_map = (r.net.state_dict() for r in runs)
    assert all(torch.equal(s_ram[k], s_map[k]) for k in s_ram)
    assert runs[0].best_val_dice == runs[1].best_val_dice and runs[0].history == runs[1].history


def test_a_scratch_dir_that_cannot_hold_a_case_is_a_one_line_error_naming_it(tmp_path, capsys):
    from medal.cli import main
    from medal.config import ConfigError
    from medal.data.scratch import ScratchError, mapped_copy

    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the scratch folder should be")
    with pytest.raises(ScratchError, match="not_a_folder: cannot keep a training case there"):
        mapped_copy(np.zeros((2, 3, 4), np.float32), blocked)
    config = tmp_path / "c.yaml"
    config.write_text(f"training:\n  items_in_memory_gb: 0\n  scratch_dir: {blocked}\n  max_epochs: 1\n")
    assert main(["train", str(sample_dataset()), "--config", str(config), "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"medal: error: {blocked}: cannot keep a training case there") and "Traceback" not in err
    assert "training.scratch_dir" in line and not (tmp_path / "m.pt").exists()
    with pytest.raises(ConfigError, match="training.items_in_memory_gb"):
        TrainingConfig(items_in_memory_gb=-1.0)
