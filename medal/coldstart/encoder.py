"""A label-free slice encoder trained on the pool itself (contrastive, SimCLR-style), for the cold start.

Thumbnails and intensity histograms see the layout of a slice but not what is *in* it. This small 2D
CNN learns, from the unlabelled pool alone, to give two augmented views of the same slice (random
crop and zoom, flip, intensity scale and shift, noise) the same embedding and other slices different
ones (NT-Xent loss; Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020). Sized to train in a minute or two on CPU cores; cached per dataset and settings
(``$MEDAL_CACHE_DIR/coldstart/<key>.pt``, the key hashes every image file and the settings, like score
volumes), so a second cold start reuses it.

Deterministic for a seed whatever the process's thread count: training and embedding run on one torch thread
(``THREADS``). With the process's threads, a 2-thread and a 1-thread training of the same seed drifted apart
(max |difference| 0.08 in the embeddings after 20 steps), enough to change which slices come out typical and
the first model by up to 0.047 Dice on the hippocampus tuning split: a benchmark that ran a random start in
its own process first (leaving torch at 1 thread) and one that did not had trained different encoders.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

__all__ = ["encode_slices", "train_encoder", "encoder_key", "slice_stack"]

SIZE = 32  # slices are resampled to SIZE x SIZE for the encoder
THREADS = 1  # torch threads while the encoder trains and embeds: the same numbers on every machine's core count


class _threads:
    """Run a block on ``n`` torch threads, then restore the process's count."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
        return False


def slice_stack(volumes: list[np.ndarray], axes: list[int], size: int = SIZE) -> np.ndarray:
    """Every slice of every (normalised) volume along its axis, resampled to ``size x size``: ``(N, size, size)``;
    for volumes of several channels ``(C, Z, Y, X)`` (``axes`` naming a spatial axis), ``(N, C, size, size)``."""
    from scipy import ndimage

    out = []
    for x, axis in zip(volumes, axes):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 4:
            out.append(np.stack([slice_stack([c], [axis], size) for c in x], axis=1))
            continue
        v = np.moveaxis(x, axis, 0)
        out.append(ndimage.zoom(v, (1, size / v.shape[1], size / v.shape[2]), order=1)[:, :size, :size])
    return np.concatenate(out).astype(np.float32)


def _as_batch(slices: np.ndarray):
    """``(N, S, S)`` or ``(N, C, S, S)`` slices as a float32 tensor ``(N, C, S, S)``."""
    import torch

    x = torch.from_numpy(np.asarray(slices, np.float32))
    return x[:, None] if x.ndim == 3 else x


def _net(dim: int, channels: int = 1):
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    encoder = nn.Sequential(block(channels, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, dim))
    return encoder, head


def _augment(x, gen):
    """Two random views of a batch ``(B, C, S, S)``: crop-and-zoom, flip, intensity scale/shift, noise (the same
    geometry and scale for every channel of a slice)."""
    import torch
    from torch.nn import functional as F

    b, _, s, _ = x.shape
    scale = 0.7 + 0.3 * torch.rand(b, generator=gen)
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * (1 - scale[:, None]) * 2
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    y = F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    y = y * (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)) + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    return y + 0.05 * torch.randn(y.shape, generator=gen)


def train_encoder(slices: np.ndarray, *, dim: int = 32, steps: int = 300, batch: int = 128, temperature: float = 0.2,
                  seed: int = 0, lr: float = 3e-3):
    """Train the encoder on ``slices (N, S, S)`` (or ``(N, C, S, S)``: one input channel per image channel); returns
    the encoder (a torch module, eval mode)."""
    import torch
    from torch.nn import functional as F

    with _threads(THREADS):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        data = _as_batch(slices)
        enc, head = _net(dim, data.shape[1])
        params = list(enc.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        n = len(data)
        for _ in range(steps):
            idx = torch.randint(0, n, (min(batch, n),), generator=gen)
            x = data[idx]
            z = F.normalize(head(enc(torch.cat([_augment(x, gen), _augment(x, gen)]))), dim=1)
            sim = z @ z.T / temperature
            m = len(idx)
            sim = sim - torch.eye(2 * m) * 1e9  # a view is not its own positive
            target = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)])
            loss = F.cross_entropy(sim, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return enc.eval()


def encoder_key(image_paths, settings: dict) -> str:
    """Hash of every image file's bytes and the encoder settings (what makes a cached encoder current)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in sorted(str(p) for p in image_paths):
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def encode_slices(slices: np.ndarray, *, key: str, cache_dir, dim: int = 32, steps: int = 300, seed: int = 0) -> np.ndarray:
    """Embeddings ``(N, dim)`` of ``slices`` from the pool's encoder (trained once, then read from the cache)."""
    import torch

    from medal.data import atomic_write_bytes

    path = Path(cache_dir) / f"encoder-{key}.pt"
    enc, _ = _net(dim, 1 if np.ndim(slices) == 3 else int(np.shape(slices)[1]))
    try:
        enc.load_state_dict(torch.load(path, weights_only=True))
        enc.eval()
    except (OSError, RuntimeError, ValueError):
        enc = train_encoder(slices, dim=dim, steps=steps, seed=seed)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in enc.state_dict().items()}, buf)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass  # no cache this time: the encoder is retrained next time
    with torch.no_grad(), _threads(THREADS):
        feats = enc(_as_batch(slices)).numpy()
    return feats.astype(np.float64)
