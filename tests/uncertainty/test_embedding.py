"""BADGE's gradient embeddings: the formula against autograd, the file round trip, clear errors."""

import numpy as np
import pytest
import torch

from medal.config import ModelConfig
from medal.model import build_model
from medal.uncertainty.embedding import gradient_embeddings, load_gradient_embeddings, save_gradient_embeddings


def _net(placement="head", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(channels=(8, 16), strides=(2,), num_res_units=1, head_channels=6, placement=placement)
    return build_model(cfg, out_channels=3)


def _head_loss(net, img):
    """Autograd's reference: head_out's weight and bias as leaves, the logits, and each voxel's cross-entropy
    with the model's argmax as the label."""
    net.eval()
    with torch.no_grad():
        h = net.deterministic(torch.as_tensor(img)[None, None])
    w = net.head_out.weight.detach().clone().requires_grad_(True)
    b = net.head_out.bias.detach().clone().requires_grad_(True)
    logits = torch.nn.functional.conv3d(h, w, b)
    return w, b, logits, torch.nn.functional.cross_entropy(logits, logits.argmax(1), reduction="none")[0]


def test_each_slice_embedding_is_the_last_layer_gradient_of_its_summed_loss():
    net = _net()
    img = np.random.default_rng(1).normal(size=(8, 12, 10)).astype(np.float32)
    emb = gradient_embeddings(net, img, roi_size=(8, 12, 10))  # one window: no blending
    assert {a: v.shape for a, v in emb.items()} == {0: (8, 3, 7), 1: (12, 3, 7), 2: (10, 3, 7)}
    assert net.training  # the caller's mode is restored
    # reference: autograd of the summed cross-entropy (the model's argmax as the label) over one slice, with
    # respect to head_out's weight and bias
    w, b, logits, loss = _head_loss(net, img)
    for axis in range(3):
        for k in (0, img.shape[axis] // 2, img.shape[axis] - 1):
            sl = [slice(None)] * 3
            sl[axis] = k
            gw, gb = torch.autograd.grad(loss[tuple(sl)].sum(), (w, b), retain_graph=True)
            ref = torch.cat([gw.reshape(3, -1), gb[:, None]], 1).numpy()
            np.testing.assert_allclose(emb[axis][k], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_a_confident_prediction_embeds_at_the_origin():
    net = _net()
    with torch.no_grad():  # a bias so large every voxel is called class 2 with probability ~1
        net.head_out.weight.zero_()
        net.head_out.bias.copy_(torch.tensor([0.0, 0.0, 40.0]))
    emb = gradient_embeddings(net, np.zeros((8, 12, 10), np.float32), roi_size=(8, 12, 10))
    assert all(np.abs(v).max() < 1e-6 for v in emb.values())


def test_other_placements_and_files_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="model.placement: head"):
        gradient_embeddings(_net("decoder"), np.zeros((8, 12, 10), np.float32), roi_size=(8, 12, 10))
    emb = {0: np.ones((4, 3, 7)), 1: np.zeros((5, 3, 7)), 2: np.full((6, 3, 7), 2.0)}
    path = save_gradient_embeddings(tmp_path / "c" / "gradient_embedding.npz", emb)
    np.testing.assert_array_equal(load_gradient_embeddings(path, 2), emb[2])
    assert load_gradient_embeddings(path, 0).dtype == np.float32
    with pytest.raises(ValueError, match=r"nope\.npz: no gradient embeddings .*badge"):
        load_gradient_embeddings(tmp_path / "nope.npz", 0)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: unreadable gradient embeddings"):
        load_gradient_embeddings(tmp_path / "bad.npz", 0)


def test_the_foreground_weighting_is_the_gradient_of_each_voxels_loss_times_its_foreground_probability():
    net = _net(seed=3)
    img = np.random.default_rng(4).normal(size=(8, 12, 10)).astype(np.float32)
    emb = gradient_embeddings(net, img, roi_size=(8, 12, 10), weightings=("none", "foreground"))
    assert set(emb) == {0, 1, 2, ("foreground", 0), ("foreground", 1), ("foreground", 2)}
    w, b, logits, loss = _head_loss(net, img)
    loss = loss * (1.0 - torch.softmax(logits, 1)[0, 0]).detach()  # weighted by predicted foreground, held fixed
    for axis in range(3):
        for k in (1, img.shape[axis] - 2):
            sl = [slice(None)] * 3
            sl[axis] = k
            gw, gb = torch.autograd.grad(loss[tuple(sl)].sum(), (w, b), retain_graph=True)
            ref = torch.cat([gw.reshape(3, -1), gb[:, None]], 1).numpy()
            np.testing.assert_allclose(emb[("foreground", axis)][k], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        # every voxel's weight is below 1, so the weighted embedding is the smaller one, and not a rescaled copy
        assert np.linalg.norm(emb[("foreground", axis)]) < np.linalg.norm(emb[axis])
    with pytest.raises(ValueError, match="weighting 'class'"):
        gradient_embeddings(net, img, roi_size=(8, 12, 10), weightings=("class",))


def test_both_weightings_round_trip_and_an_older_file_names_what_it_lacks(tmp_path):
    from medal.uncertainty.embedding import has_gradient_embeddings

    emb = {0: np.ones((4, 3, 7)), ("foreground", 0): np.full((4, 3, 7), 0.5)}
    path = save_gradient_embeddings(tmp_path / "c" / "gradient_embedding.npz", emb)
    np.testing.assert_array_equal(load_gradient_embeddings(path, 0, "foreground"), emb[("foreground", 0)])
    np.testing.assert_array_equal(load_gradient_embeddings(path, 0), emb[0])
    assert has_gradient_embeddings(path, "foreground") and has_gradient_embeddings(path, "none")
    old = save_gradient_embeddings(tmp_path / "old" / "gradient_embedding.npz", {0: np.ones((4, 3, 7))})
    assert not has_gradient_embeddings(old, "foreground")
    with pytest.raises(ValueError, match=r"gradient_embedding\.npz: no 'foreground'-weighted gradient embeddings"):
        load_gradient_embeddings(old, 0, "foreground")
    with pytest.raises(ValueError, match="weighting 'fg'"):
        load_gradient_embeddings(path, 0, "fg")


def test_on_a_resampled_case_each_of_its_own_slices_gets_the_gradient_at_the_interpolated_features():
    """data.spacing: the network sees an (8, 12, 6) grid, the case has (8, 12, 12) slices. Each case slice's
    embedding is autograd's gradient of its summed loss with the head applied to the hidden features brought
    back trilinearly to the case's grid (the same features the case's probabilities are made of)."""
    from medal.data.resample import to_case_grid

    net = _net(seed=3)
    x_net = np.random.default_rng(2).normal(size=(8, 12, 6)).astype(np.float32)
    case_shape = (8, 12, 12)
    from medal.data.resample import NetworkGrid

    grid = NetworkGrid(case_shape, None, (8, 12, 6), case_shape)
    emb = gradient_embeddings(net, x_net, roi_size=(8, 12, 6), grid=grid)
    assert {a: v.shape[0] for a, v in emb.items()} == dict(enumerate(case_shape))
    net.eval()
    with torch.no_grad():
        h = net.deterministic(torch.as_tensor(x_net)[None, None])[0].numpy()
    h = torch.as_tensor(to_case_grid(h, case_shape))[None]
    w = net.head_out.weight.detach().clone().requires_grad_(True)
    b = net.head_out.bias.detach().clone().requires_grad_(True)
    logits = torch.nn.functional.conv3d(h, w, b)
    loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1), reduction="none")[0]
    for axis in range(3):
        for k in (0, case_shape[axis] // 2, case_shape[axis] - 1):
            sl = [slice(None)] * 3
            sl[axis] = k
            gw, gb = torch.autograd.grad(loss[tuple(sl)].sum(), (w, b), retain_graph=True)
            ref = torch.cat([gw.reshape(3, -1), gb[:, None]], 1).numpy()
            np.testing.assert_allclose(emb[axis][k], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # without a case shape the same image gives the network grid's 6 slices along axis 2, not the case's 12
    assert gradient_embeddings(net, x_net, roi_size=(8, 12, 6))[2].shape[0] == 6


def test_write_case_embeddings_resamples_only_a_case_off_the_network_spacing(tmp_path):
    from types import SimpleNamespace

    from medal.data.resample import network_grid
    from medal.uncertainty.embedding import write_case_embeddings

    net = _net(seed=4)
    ucfg = SimpleNamespace(roi_size=(8, 12, 10), overlap=0.25)
    x = np.random.default_rng(5).normal(size=(8, 12, 5)).astype(np.float32)  # a thick case: 2 mm along axis 2
    p = write_case_embeddings(net, x, tmp_path, "thick", ucfg=ucfg,
                              grid=network_grid(x.shape, np.diag([1.0, 1.0, 2.0, 1.0]), (1.0, 1.0, 1.0)))
    with np.load(p) as z:
        assert [z[f"axis{a}"].shape[0] for a in range(3)] == [8, 12, 5]  # the case's own slices
        thick = z["axis2"]
    with np.load(write_case_embeddings(net, x, tmp_path, "as_is", ucfg=ucfg)) as z:
        assert np.abs(z["axis2"] - thick).max() > 1e-3  # the network saw it on a finer grid
    # a case within 2% of the network's spacing is used as it is, bit for bit
    near = network_grid(x.shape, np.diag([1.0, 1.01, 1.0, 1.0]), (1.0, 1.0, 1.0))
    with np.load(write_case_embeddings(net, x, tmp_path, "near", ucfg=ucfg, grid=near)) as z:
        as_is = np.load(tmp_path / "scores" / "as_is" / "gradient_embedding.npz")["axis2"]
        np.testing.assert_array_equal(z["axis2"], as_is)
    with pytest.raises(ValueError, match=r"network grid of a case of shape \(8, 12, 6\) given an image"):
        write_case_embeddings(net, x, tmp_path, "x", ucfg=ucfg, grid=network_grid((8, 12, 6), np.eye(4)))


def test_a_reoriented_case_gets_the_embeddings_of_its_own_slices(tmp_path):
    """data.orientation: a case stored LPS with its axes swapped; the network sees it in RAS order, and every slice
    of the case's own axes gets the same embedding as the RAS-stored twin gives its matching slice."""
    from types import SimpleNamespace

    from medal.data.resample import network_grid
    from medal.uncertainty.embedding import write_case_embeddings

    net = _net(seed=6)
    ucfg = SimpleNamespace(roi_size=(8, 12, 10), overlap=0.25)
    x = np.random.default_rng(7).normal(size=(8, 12, 10)).astype(np.float32)  # RAS storage
    twin = np.ascontiguousarray(np.flip(x, (0, 1)).transpose(1, 0, 2))  # axes (A->P, R->L, S): "PLS"
    aff = np.zeros((4, 4))
    aff[0, 1], aff[1, 0], aff[2, 2], aff[3, 3] = -1.0, -1.0, 1.0, 1.0
    with np.load(write_case_embeddings(net, x, tmp_path, "ras", ucfg=ucfg)) as z:
        ras = {k: z[k] for k in z.files}
    grid = network_grid(twin.shape, aff, None, "RAS")
    np.testing.assert_array_equal(grid.to_network(twin), x)
    with np.load(write_case_embeddings(net, twin, tmp_path, "pls", ucfg=ucfg, grid=grid)) as z:
        assert z["axis0"].shape[0] == 12 and z["axis1"].shape[0] == 8  # the case's own axes
        np.testing.assert_allclose(z["axis0"], ras["axis1"][::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["axis1"], ras["axis0"][::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["axis2"], ras["axis2"], rtol=1e-5, atol=1e-6)
