import numpy as np
import pytest
import torch
from torch import nn

from medal.config import ModelConfig
from medal.model import build_model
from medal.uncertainty.inference import mc_predict, predict_probs
from medal.uncertainty.mc import mc_dropout


@pytest.mark.parametrize("placement", ["head", "decoder", "monai"])
def test_mc_passes_differ_while_norm_layers_stay_in_eval(placement):
    torch.manual_seed(0)
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,), norm="batch", placement=placement), out_channels=3)
    net.train()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        net(torch.randn(2, 1, 16, 16, 16))  # give BatchNorm non-trivial running stats
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    stats = [m.running_mean.clone() for m in bns]
    with torch.no_grad(), mc_dropout(net):
        assert bns and all(not m.training for m in bns)
        drops = [m for m in net.modules() if isinstance(m, (nn.Dropout, nn.Dropout3d)) and m.p > 0]
        assert drops and all(m.training for m in drops)
        a, b = net(x), net(x)
    assert not torch.allclose(a, b)
    for m, s in zip(bns, stats):
        torch.testing.assert_close(m.running_mean, s)  # eval mode: statistics not updated
    assert all(m.training for m in net.modules())  # restored


def test_instance_norm_stays_in_eval_under_mc_dropout():
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,), norm="instance"), out_channels=2).train()
    norms = [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
    assert norms
    with mc_dropout(net):
        assert all(not m.training for m in norms)
        assert all(m.training for m in net.modules() if isinstance(m, nn.Dropout3d) and m.p > 0)
    assert all(m.training for m in norms)


@pytest.mark.gpu
def test_mc_predict_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,)), out_channels=3)
    img = np.random.default_rng(0).normal(size=(16, 24, 16)).astype(np.float32)
    cpu = predict_probs(net, img, roi_size=(16, 24, 16))
    # cuDNN's TF32 convolutions (PyTorch's default on Ampere and later) moved probabilities by up to 2.1e-4 on an
    # H200: the same computation is checked in full fp32, the default path within TF32's precision
    prev = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        exact = predict_probs(net.cuda(), img, roi_size=(16, 24, 16), device="cuda")
        torch.backends.cudnn.allow_tf32 = True
        tf32 = predict_probs(net, img, roi_size=(16, 24, 16), device="cuda")
    finally:
        torch.backends.cudnn.allow_tf32 = prev
    np.testing.assert_allclose(exact, cpu, atol=1e-4)
    np.testing.assert_allclose(tf32, cpu, atol=2e-3)
    res = mc_predict(net, img, n_samples=8, roi_size=(16, 24, 16), device="cuda")
    assert res.mean_probs.shape == (3, 16, 24, 16) and np.isfinite(res.mean_entropy).all()


def test_state_restored_from_eval_and_after_exception():
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,)), out_channels=2).eval()
    with pytest.raises(RuntimeError, match="boom"):
        with mc_dropout(net):
            raise RuntimeError("boom")
    assert not any(m.training for m in net.modules())


def test_net_without_dropout_raises():
    net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))
    with pytest.raises(ValueError, match="no dropout layer"):
        with mc_dropout(net):
            pass


@pytest.mark.parametrize("placement", ["head", "decoder", "monai"])
def test_deterministic_then_stochastic_equals_forward(placement):
    net = build_model(ModelConfig(channels=(8, 16, 32), strides=(2, 2), placement=placement), out_channels=3).eval()
    x = torch.randn(1, 1, 16, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(net.stochastic(net.deterministic(x)), net(x))


def test_masked_weight_head_equals_dropout3d():
    torch.manual_seed(0)
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,), head_channels=6), out_channels=3)
    with torch.no_grad(), mc_dropout(net):
        h = net.deterministic(torch.randn(1, 1, 8, 8, 8))
        torch.manual_seed(5)
        fast = net.sample_logits(h, 4)
        torch.manual_seed(5)
        keep = torch.bernoulli(torch.full((4, 1, 6), 1 - net.head_dropout.p))
        p = net.head_dropout.p
        slow = torch.stack([net.head_out(h * (keep[i, 0] / (1 - p)).view(1, 6, 1, 1, 1))[0] for i in range(4)])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast[0], fast[1])


def test_mc_predict_matches_explicit_samples_and_is_repeatable():
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,)), out_channels=3)
    img = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    r1 = mc_predict(net, img, n_samples=7, sample_batch=3, roi_size=(16, 16, 16), seed=1)
    r2 = mc_predict(net, img, n_samples=7, sample_batch=7, roi_size=(16, 16, 16), seed=1)
    assert r1.mean_probs.shape == (3, 16, 16, 16)
    m1 = r1.measures(["entropy", "bald", "variance"])
    assert all(v.shape == (16, 16, 16) and v.dtype == np.float32 for v in m1.values())
    assert m1["bald"].max() > 0  # samples really differ
    r3 = mc_predict(net, img, n_samples=7, sample_batch=3, roi_size=(16, 16, 16), seed=1)
    np.testing.assert_array_equal(r1.mean_probs, r3.mean_probs)
    np.testing.assert_allclose(r1.mean_probs.sum(0), 1.0, atol=1e-5)
    # mean over MC samples approaches the deterministic prediction (dropout is unbiased before the linear layer)
    det = predict_probs(net, img, roi_size=(16, 16, 16))
    many = mc_predict(net, img, n_samples=400, sample_batch=100, roi_size=(16, 16, 16), seed=2)
    assert np.abs(many.mean_probs - det).mean() < 0.02
    assert np.abs(r2.mean_probs - det).mean() < 0.1


def test_sliding_window_covers_volume_larger_than_roi():
    net = build_model(ModelConfig(channels=(8, 16), strides=(2,)), out_channels=2)
    img = np.random.default_rng(0).normal(size=(40, 20, 18)).astype(np.float32)
    res = mc_predict(net, img, n_samples=3, roi_size=(16, 16, 16), overlap=0.25)
    assert res.mean_probs.shape == (2, 40, 20, 18)
    assert np.isfinite(res.mean_entropy).all()
    assert res.prediction().shape == (40, 20, 18)
