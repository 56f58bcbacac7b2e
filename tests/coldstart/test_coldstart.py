import dataclasses
import json

import numpy as np
import pytest

from medal.coldstart import coldstart_select, kmeans, slice_descriptors, typicality
from medal.config import ColdstartConfig, ConfigError, DataConfig
from medal.data import load_dataset, load_volume, sample_dataset
from medal.tasks import read_tasks


# the shipped settings with a shorter encoder training (60 of its 300 steps): the tests check what the selection
# does with an encoder, not how good a 300-step one is (benchmarks/coldstart.py measures that); one 300-step
# training on the three-plane sample took two of the suite's 15 minutes
DEFAULTS = dataclasses.replace(ColdstartConfig(), encoder_steps=60)


def test_coldstart_tasks_within_budget_and_spread_over_cases(tmp_path):
    ds = load_dataset(sample_dataset())
    tasks = coldstart_select(ds, tmp_path, budget_s=150.0, cfg=DEFAULTS)
    tl = read_tasks(tmp_path / "tasks.json")
    assert [t.task_id for t in tl.tasks] == [t.task_id for t in tasks]
    # the defaults: three planes in one pool, and a reserve queue of half a budget after the budget's slices
    n_reserve = tl.meta["reserve_tasks"]
    main, reserve = tl.tasks[:len(tl.tasks) - n_reserve], tl.tasks[len(tl.tasks) - n_reserve:]
    assert 0 < sum(t.predicted_cost_s for t in main) <= 150.0
    assert n_reserve > 0 and sum(t.predicted_cost_s for t in reserve) <= 75.0 + 1e-6
    assert len({t.case_id for t in main}) >= 3  # diverse: several cases, not one
    assert all(t.kind == "slice" and t.strategy == "coldstart" for t in tl.tasks)
    assert {t.axis for t in tl.tasks} <= {0, 1, 2} and len({t.axis for t in tl.tasks}) >= 2
    assert len({(t.case_id, t.axis, t.index) for t in tl.tasks}) == len(tl.tasks)  # nothing chosen twice
    # an explicit plane wins over the config's (thumbnails here: an axial-only encoder would cost another training)
    one = coldstart_select(ds, tmp_path / "axial", budget_s=150.0,
                           cfg=dataclasses.replace(ColdstartConfig(), representation="thumbnails"), axis="axial")
    assert {t.axis for t in one} == {2}
    with pytest.raises(FileExistsError):
        coldstart_select(ds, tmp_path, budget_s=150.0, cfg=DEFAULTS)


def test_typical_points_sit_in_dense_regions_and_kmeans_separates_blobs():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (50, 2))
    b = rng.normal(5, 0.1, (50, 2))
    outlier = np.array([[20.0, 20.0]])
    x = np.concatenate([a, b, outlier])
    lab = kmeans(x[:100], 2, seed=0)
    assert len(set(lab[:50])) == 1 and len(set(lab[50:100])) == 1 and lab[0] != lab[50]
    typ = typicality(x, neighbours=5)
    assert typ[-1] < typ[:100].min()


def _kmeans_reference(x, k, seed):
    """The unblocked Lloyd loop medal shipped until 2026-12-04 (whole distance matrix, a mask per centre)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        centres.append(x[rng.choice(n, p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(50):
        new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if (new == labels).all() and it > 0:
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                c[j] = x[labels == j].mean(0)
    return labels


@pytest.mark.parametrize("block", [1, 7, 256, 10_000])
def test_blocked_kmeans_gives_the_unblocked_labels_bit_for_bit(block):
    """Recorded cold starts must reproduce: blocking the distances changes memory and speed, never a label."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(m, 1.0, (150, 16)) for m in (0.0, 0.7, 1.5)])  # overlapping: many near-ties
    for k, seed in ((5, 0), (40, 1)):
        np.testing.assert_array_equal(kmeans(x, k, seed=seed, block=block), _kmeans_reference(x, k, seed))


def test_descriptors_shape():
    d = slice_descriptors(np.random.default_rng(0).normal(size=(20, 30, 7)), axis=2, thumbnail=8)
    assert d.shape == (7, 8 * 8 + 16) and np.isfinite(d).all()


@pytest.mark.parametrize("method", ["typiclust", "probcover"])
def test_budget_cap_and_reproducibility_for_each_method(tmp_path, method):
    ds = load_dataset(sample_dataset())
    cfg = ColdstartConfig(representation="thumbnails", method=method, max_per_case=2, pilot=0, reserve=0.0)
    a = coldstart_select(ds, tmp_path / "a", budget_s=400.0, cfg=cfg)
    b = coldstart_select(ds, tmp_path / "b", budget_s=400.0, cfg=cfg)
    assert [(t.case_id, t.index) for t in a] == [(t.case_id, t.index) for t in b]  # same seed, same selection
    assert a and sum(t.predicted_cost_s for t in a) <= 400.0
    counts = {}
    for t in a:
        counts[t.case_id] = counts.get(t.case_id, 0) + 1
    assert max(counts.values()) <= 2
    if method == "typiclust":  # k-means seeding: another seed, other clusters (ProbCover's greedy has no seed)
        c = coldstart_select(ds, tmp_path / "c", budget_s=400.0, cfg=dataclasses.replace(cfg, seed=5))
        assert [(t.case_id, t.index) for t in c] != [(t.case_id, t.index) for t in a]


def test_pilot_scaling_recovers_a_known_factor(tmp_path):
    """The expert took 1.7x the prior on the pilot slices: every prediction after the pilot is 1.7x."""
    from medal.coldstart import pilot_scale
    from medal.costs import append_annotation_log

    assert pilot_scale([10, 20], [17, 34]) == pytest.approx(1.7) and pilot_scale([], []) == 1.0
    ds = load_dataset(sample_dataset())
    cfg = dataclasses.replace(DEFAULTS, pilot=3, reserve=0.0)
    pilot = coldstart_select(ds, tmp_path, budget_s=600.0, cfg=cfg, pilot=3)
    assert len(pilot) == 3
    log = tmp_path / "annotation_log.jsonl"
    for t in pilot:
        append_annotation_log(log, {"task_id": t.task_id, "case_id": t.case_id, "axis": t.axis, "index": t.index,
                                    "seconds": 1.7 * t.predicted_cost_s})
    before = {(t.case_id, t.axis, t.index): t.predicted_cost_s for t in
              coldstart_select(ds, tmp_path / "unscaled", budget_s=600.0, cfg=cfg)}
    keep = [t for t in pilot]
    after = coldstart_select(ds, tmp_path, budget_s=600.0, cfg=cfg, pilot_log=log, keep=keep, overwrite=True)
    meta = read_tasks(tmp_path / "tasks.json").meta
    assert meta["cost_prior"]["scale"] == pytest.approx(1.7) and meta["cost_prior"]["pilot_tasks"] == 3
    assert [t.task_id for t in after[:3]] == [t.task_id for t in pilot]  # the pilot stays first
    new = [t for t in after[3:] if (t.case_id, t.axis, t.index) in before]
    assert new and all(t.predicted_cost_s == pytest.approx(1.7 * before[(t.case_id, t.axis, t.index)]) for t in new)
    assert sum(t.predicted_cost_s for t in after) <= 600.0 + 1e-6


@pytest.mark.slow
def test_encoder_is_deterministic_and_separates_anatomy(tmp_path, monkeypatch):
    """Trained on a few real cases, the encoder gives the same embeddings for the same seed (on 1 or 2 threads), and its
    embeddings tell slices from the ends of a crop from slices through its middle far better than chance
    (1-nearest-neighbour across cases)."""
    from medal.coldstart.encoder import encode_slices, slice_stack, train_encoder
    from medal.data import load_volume, normalize_intensity

    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path))
    ds = load_dataset(sample_dataset())
    vols, labels, owner = [], [], []
    for n, case in enumerate(ds.cases[:6]):
        x = normalize_intensity(load_volume(case.image).array)
        vols.append(x)
        k = x.shape[2]
        pos = np.arange(k) / (k - 1)
        labels += [0 if (p < 0.15 or p > 0.85) else 1 if 0.35 < p < 0.65 else -1 for p in pos]
        owner += [n] * k
    slices = slice_stack(vols, [2] * len(vols))
    labels, owner = np.array(labels), np.array(owner)
    import torch

    # the same numbers whatever the process's thread count (a 1-thread and a 2-thread training used to drift
    # apart), and the process's count is left as it was
    # (the cached encoder is trained under 2 threads, the reference under 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        z = encode_slices(slices, key="test", cache_dir=tmp_path, steps=60, seed=1)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        e2 = train_encoder(slices, steps=60, seed=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "encoder-test.pt").is_file()
    cached = torch.load(tmp_path / "encoder-test.pt", weights_only=True)
    assert list(cached) == list(e2.state_dict())
    for name, b in e2.state_dict().items():
        assert torch.equal(cached[name], b), name
    np.testing.assert_allclose(encode_slices(slices, key="test", cache_dir=tmp_path, steps=60, seed=1), z, rtol=1e-5)
    use = labels >= 0
    z, y, o = z[use], labels[use], owner[use]
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-8)
    correct = []
    for i in range(len(z)):
        other = o != o[i]  # neighbours from other cases only
        d = ((z[other] - z[i]) ** 2).sum(1)
        correct.append(y[other][np.argmin(d)] == y[i])
    assert np.mean(correct) > 0.7  # chance is about 0.5


def test_encoder_cache_is_keyed_by_the_slice_orientation(tmp_path, monkeypatch):
    """An encoder trained on axial slices is not reused for sagittal ones (another cache entry), and the
    sagittal selection chooses sagittal slices."""
    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:4]]
    cfg = ColdstartConfig(representation="encoder", encoder_steps=5)
    axial = coldstart_select(ds, tmp_path / "a", budget_s=120.0, cfg=cfg, pool=pool, axis="axial")
    first = set((tmp_path / "cache" / "coldstart").glob("encoder-*.pt"))
    sag = coldstart_select(ds, tmp_path / "s", budget_s=120.0, cfg=cfg, pool=pool, axis="sagittal")
    both = set((tmp_path / "cache" / "coldstart").glob("encoder-*.pt"))
    assert len(first) == 1 and len(both) == 2
    assert {t.axis for t in axial} == {2} and {t.axis for t in sag} == {0}
    again = coldstart_select(ds, tmp_path / "s2", budget_s=120.0, cfg=cfg, pool=pool, axis="sagittal")
    assert [(t.case_id, t.index) for t in again] == [(t.case_id, t.index) for t in sag]  # read from its cache
    assert set((tmp_path / "cache" / "coldstart").glob("encoder-*.pt")) == both


def test_a_start_over_several_planes_mixes_them_under_one_budget_and_cap(tmp_path, monkeypatch):
    """``axis`` as a list (``regions.axis: [axial, coronal, sagittal]``): the slices of every plane are one pool:
    one encoder (its own cache entry), the picks hold more than one plane, the per-volume cap counts a case's
    slices of all planes together, every task's bbox is one slice thick along its own axis."""
    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:6]]
    cfg = ColdstartConfig(representation="encoder", encoder_steps=5, max_per_case=2)
    planes = ["axial", "coronal", "sagittal"]
    tasks = coldstart_select(ds, tmp_path / "m", budget_s=240.0, cfg=cfg, pool=pool, axis=planes)
    assert len(set((tmp_path / "cache" / "coldstart").glob("encoder-*.pt"))) == 1
    assert tasks and sum(t.predicted_cost_s for t in tasks) <= 240.0
    assert len({t.axis for t in tasks}) >= 2  # a typical set over three planes is not all one plane
    counts = {}
    for t in tasks:
        counts[t.case_id] = counts.get(t.case_id, 0) + 1
        lo, hi = t.bbox
        assert hi[t.axis] - lo[t.axis] == 1 and lo[t.axis] == t.index
        assert all(lo[d] == 0 and hi[d] == load_volume(ds.case(t.case_id).image).shape[d] for d in range(3)
                   if d != t.axis)
    assert max(counts.values()) <= 2
    assert len({(t.case_id, t.axis, t.index) for t in tasks}) == len(tasks)
    # one plane in a list is that plane: the same slices as asked for by name (same encoder, read from its cache)
    one = coldstart_select(ds, tmp_path / "a", budget_s=240.0, cfg=cfg, pool=pool, axis=["axial"])
    named = coldstart_select(ds, tmp_path / "b", budget_s=240.0, cfg=cfg, pool=pool, axis="axial")
    assert [(t.case_id, t.axis, t.index) for t in one] == [(t.case_id, t.axis, t.index) for t in named]
    with pytest.raises(ValueError, match="axis"):
        coldstart_select(ds, tmp_path / "c", budget_s=240.0, cfg=cfg, pool=pool, axis=["axial", "axial"])


def test_an_encoder_ensemble_averages_the_geometry_of_its_encoders(tmp_path, monkeypatch):
    """``coldstart.encoders: 2``: the first encoder is the one-encoder default's (its cache entry reused), a
    second is trained under a far seed; squared distances are the mean of each encoder's; the selection is
    reproducible and its manifest names both encoders."""
    from medal.coldstart.select import _describe, _representation

    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "coldstart"
    ds = load_dataset(sample_dataset())
    cases = ds.cases[:4]
    one_cfg = ColdstartConfig(representation="encoder", encoder_steps=5)
    two_cfg = dataclasses.replace(one_cfg, encoders=2)
    volumes, vol_axes, good, *_ = _describe(ds, cases, one_cfg, DataConfig(), "axial")
    z1, text1 = _representation(volumes, vol_axes, good, one_cfg)
    assert len(set(cache.glob("encoder-*.pt"))) == 1 and "1 contrastive" not in text1
    z2, text2 = _representation(volumes, vol_axes, good, two_cfg)
    assert len(set(cache.glob("encoder-*.pt"))) == 2 and text2.startswith("2 contrastive slice encoders")
    d = z1.shape[1]
    assert z2.shape == (len(z1), 2 * d)
    np.testing.assert_allclose(z2[:, :d] * np.sqrt(2), z1, atol=1e-9)  # the first is the default's encoder
    other = z2[:, d:] * np.sqrt(2)
    assert np.abs(other - z1).max() > 0.1  # the second encoder is another one
    i, j = 3, len(z1) - 5
    sq = lambda a: float(((a[i] - a[j]) ** 2).sum())  # noqa: E731
    assert sq(z2) == pytest.approx((sq(z1) + sq(other)) / 2)
    pool = [c.case_id for c in cases]
    a = coldstart_select(ds, tmp_path / "a", budget_s=150.0, cfg=two_cfg, pool=pool, axis="axial")
    b = coldstart_select(ds, tmp_path / "b", budget_s=150.0, cfg=two_cfg, pool=pool, axis="axial")
    assert a and [(t.case_id, t.index) for t in a] == [(t.case_id, t.index) for t in b]
    assert sum(t.predicted_cost_s for t in a) <= 150.0 * (1 + two_cfg.reserve) + 1e-6
    manifest = json.loads((tmp_path / "a" / "tasks.json").read_text())
    assert "2 contrastive slice encoders" in manifest["representation"]
    with pytest.raises(ConfigError, match="coldstart.encoders"):
        ColdstartConfig(encoders=0)


def test_a_multichannel_pool_is_embedded_on_every_channel(tmp_path, monkeypatch):
    """Two-channel cases (real images and a derived second channel, nnU-Net's _0000/_0001 files): the encoder takes
    both channels (its own cache entry), so a change to channel 1 alone moves the embeddings, as it moves the
    thumbnails representation; the selection says so; a case without its second channel, or with it on another
    grid, is skipped with the reason and the others go on."""
    import shutil

    from medal.coldstart.select import _describe, _representation
    from medal.data import Volume, save_volume
    from medal.testing import write_multichannel_dataset

    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path / "cache"))
    src = load_dataset(sample_dataset()).cases[:4]
    a, b = tmp_path / "a", tmp_path / "b"
    write_multichannel_dataset(a, src)
    shutil.copytree(a, b)
    for c in src:  # b: channel 1 is another contrast (a gamma of channel 0), channel 0 the same file
        x = load_volume(a / "imagesTr" / f"{c.case_id}_0000.nii.gz")
        v = np.clip(x.array, 0, None)
        save_volume(Volume((v / max(float(v.max()), 1.0)) ** 0.5, x.affine), b / "imagesTr" / f"{c.case_id}_0001.nii.gz")
    cfg = ColdstartConfig(representation="encoder", encoder_steps=5)
    out = {}
    for name, root in (("a", a), ("b", b)):
        ds = load_dataset(root)
        volumes, vol_axes, good, *_, stacks = _describe(ds, ds.cases, cfg, DataConfig(), "axial")
        assert stacks is not None and all(s.shape[0] == 2 and s.shape[1:] == v.shape for s, v in zip(stacks, volumes))
        assert all(np.array_equal(s[0], v) for s, v in zip(stacks, volumes))
        out[name] = {rep: _representation(volumes, vol_axes, good, dataclasses.replace(cfg, representation=rep),
                                          stacks=stacks) for rep in ("encoder", "thumbnails")}
    for rep in ("encoder", "thumbnails"):
        za, text = out["a"][rep]
        zb, _ = out["b"][rep]
        assert za.shape == zb.shape and "2 channels" in text
        assert np.abs(za - zb).max() > 0.1, rep  # channel 1 is seen
    assert len(list((tmp_path / "cache" / "coldstart").glob("encoder-*.pt"))) == 2
    (b / "imagesTr" / f"{src[1].case_id}_0001.nii.gz").unlink()
    x = load_volume(b / "imagesTr" / f"{src[2].case_id}_0000.nii.gz")
    save_volume(Volume(x.array[:, :, :-2], x.affine), b / "imagesTr" / f"{src[2].case_id}_0001.nii.gz")
    tasks = coldstart_select(load_dataset(b), tmp_path / "r", budget_s=120.0, cfg=cfg, axis="axial")
    meta = json.loads((tmp_path / "r" / "tasks.json").read_text())
    assert tasks and {t.case_id for t in tasks} <= {src[0].case_id, src[3].case_id}
    assert "2 channels" in meta["representation"]
    assert set(meta["skipped"]) == {src[1].case_id, src[2].case_id}
    assert "1 channel file(s), the pool's first case has 2" in meta["skipped"][src[1].case_id]
    assert f"imagesTr/{src[2].case_id}_0001.nii.gz" in meta["skipped"][src[2].case_id]
    assert str(tmp_path) not in json.dumps(meta["skipped"])


def test_min_gap_represents_a_cluster_by_its_most_typical_slice_clear_of_those_held():
    """Two blobs whose most typical points are adjacent slices of one volume: with ``min_gap`` the less valuable
    cluster is represented by its most typical slice at least the gap away (a loop reference), values by the
    same rule (typicality x cluster share); without it, by the adjacent slice."""
    from medal.coldstart.select import _typical_representatives

    rng = np.random.default_rng(3)
    # volume a: slices 0-9, volume b: slices 0-9, one plane each; a big blob around (0, 0) and a small one around
    # (6, 0), each with a tight core of two adjacent slices of volume a (3, 4 and 5, 6): the blobs' most typical
    # slices lie within the gap of each other
    owner = np.array(["a"] * 10 + ["b"] * 10)
    rel = np.array([(i + 0.5) / 10 for i in range(10)] * 2)
    plane = np.array([0] * 10 + [1] * 10)
    big = [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16]
    small = [5, 6, 7, 8, 9, 17, 18, 19]
    z = np.zeros((20, 2))
    z[big] = rng.normal(0, 0.5, (len(big), 2))
    z[small] = rng.normal(0, 0.5, (len(small), 2)) + [6, 0]
    z[3], z[4], z[5], z[6] = [0, 0], [0.01, 0], [6, 0], [6.01, 0]
    typ = typicality(z, neighbours=1)
    top_big, top_small = big[int(np.argmax(typ[big]))], small[int(np.argmax(typ[small]))]
    assert top_big in (3, 4) and top_small in (5, 6)
    allowed = np.ones(20, bool)
    cfg = ColdstartConfig(min_gap=0.0, max_per_case=0, neighbours=1)
    reps, _ = _typical_representatives(z, typ, 2, cfg, owner, {}, [], allowed, (plane, rel))
    assert sorted(reps.tolist()) == sorted([top_big, top_small])
    gap = dataclasses.replace(cfg, min_gap=0.35)
    reps, values = _typical_representatives(z, typ, 2, gap, owner, {}, [], allowed, (plane, rel))

    def clear_of(i, held):
        return all(plane[i] != plane[h] or abs(rel[i] - rel[h]) >= 0.35 for h in held)

    clear = [i for i in small if clear_of(i, [top_big])]  # the big blob (more valuable) keeps its slice
    expected = clear[int(np.argmax(typ[clear]))]
    assert sorted(reps.tolist()) == sorted([top_big, expected]) and expected != top_small
    got = dict(zip(reps.tolist(), values.tolist()))
    assert got[expected] == pytest.approx(typ[expected] / typ.max() * len(small) / 20)
    assert got[top_big] == pytest.approx(typ[top_big] / typ.max() * len(big) / 20)
    # a kept slice holds its place too: with the small blob's top slice kept, the big blob's representative
    # is its most typical slice clear of it (and the small blob, holding a kept slice, has none)
    reps, _ = _typical_representatives(z, typ, 2, gap, owner, {}, [top_small], allowed, (plane, rel))
    clear = [i for i in big if clear_of(i, [top_small])]
    assert reps.tolist() == [clear[int(np.argmax(typ[clear]))]]


def test_min_gap_keeps_a_start_free_of_near_duplicate_slices(tmp_path):
    """A real start over three planes with ``min_gap``: no two slices (budget and reserve) of one volume and plane
    closer than the gap, within budget and cap; without the gap the same start holds such a pair; the option is
    checked at load."""
    ds = load_dataset(sample_dataset())
    base = ColdstartConfig(representation="thumbnails", edge_margin=0.2, pilot=0, max_per_case=3, reserve=0.5,
                           axis=["axial", "coronal", "sagittal"])
    shape = {c.case_id: load_volume(c.image).shape for c in ds.cases}

    def near_pairs(tasks, gap):
        return [(a.case_id, a.axis, a.index, b.index) for n, a in enumerate(tasks) for b in tasks[n + 1:]
                if (a.case_id, a.axis) == (b.case_id, b.axis)
                and abs(a.index - b.index) / shape[a.case_id][a.axis] < gap]

    plain = coldstart_select(ds, tmp_path / "plain", budget_s=600.0, cfg=base)
    assert near_pairs(plain, 0.2)
    spaced = coldstart_select(ds, tmp_path / "gap", budget_s=600.0, cfg=dataclasses.replace(base, min_gap=0.2))
    assert spaced and not near_pairs(spaced, 0.2)
    manifest = json.loads((tmp_path / "gap" / "tasks.json").read_text())
    main = spaced[:len(spaced) - manifest["reserve_tasks"]]
    assert 0 < sum(t.predicted_cost_s for t in main) <= 600.0
    counts = {}
    for t in spaced:
        counts[t.case_id] = counts.get(t.case_id, 0) + 1
    assert max(counts.values()) <= 3
    with pytest.raises(ConfigError, match="coldstart.min_gap"):
        ColdstartConfig(min_gap=0.5)
    with pytest.raises(ConfigError, match="pooled TypiClust"):
        ColdstartConfig(method="probcover", min_gap=0.1)
    with pytest.raises(ConfigError, match="pooled TypiClust"):
        ColdstartConfig(plane_quota=True, min_gap=0.1)


def test_simulated_cold_start_times_its_pilot_with_the_oracle_and_scales_the_prior(tmp_path):
    """`medal simulate` with ``initial: coldstart``: the oracle paints and times the pilot slices, its
    log (the same rows the napari plugin writes) scales the prior, the pilot stays first at its true
    seconds, and the whole start's true seconds stay within 10% of the budget."""
    from medal.config import config_from_dict
    from medal.costs import CostModel, read_annotation_log
    from medal.simulation.simulate import _prepare_initial

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:6]]
    cfg = config_from_dict({"coldstart": {"representation": "thumbnails", "pilot": 3, "max_per_case": 5, "reserve": 0.0},
                            "simulation": {"initial": "coldstart", "initial_budget_s": 300.0}})
    _prepare_initial(ds, pool, cfg, 0, CostModel.default(n_classes=3), tmp_path)
    log = read_annotation_log(tmp_path / "pilot" / "annotation_log.jsonl")
    assert all({"case_id", "axis", "index", "seconds"} <= set(r) for r in log)
    pilot_tasks = read_tasks(tmp_path / "pilot" / "batch_0" / "tasks.json").tasks
    assert len(pilot_tasks) == 3
    batches = [read_tasks(tmp_path / "pilot" / f"batch_{k}" / "tasks.json").tasks for k in (1, 2, 3)]
    assert len(log) == 3 + sum(map(len, batches)) and all(batches)  # the pilot, then three timed batches
    tl = read_tasks(tmp_path / "tasks.json")
    prior = tl.meta["cost_prior"]
    assert prior["pilot_tasks"] == len(log) and prior["scale"] > 0 and prior["scale"] != pytest.approx(1.0)
    took = {(r["case_id"], r["axis"], r["index"]): r["seconds"] for r in log}
    n = len(took)
    first = [(t.case_id, t.axis, t.index) for t in tl.tasks[:n]]
    assert set(first) == set(took)  # the timed slices first ...
    assert [t.predicted_cost_s for t in tl.tasks[:n]] == pytest.approx([took[k] for k in first])  # ... at their seconds
    assert {t.case_id for t in tl.tasks} <= set(pool)
    # the rest is painted in order with a clock: a slice starts only if its prediction fits the true seconds
    # left, so the true seconds of the whole start land within 10% of the budget
    clock = tl.meta["clock"]
    assert clock["painted"] == len(tl.tasks) - n and clock["painted"] <= clock["chosen"]
    from medal.simulation.oracle import oracle_annotate

    charged = oracle_annotate(tl, ds, tmp_path / "check", cost_model=CostModel.default(n_classes=3))["seconds"]
    assert charged == pytest.approx(clock["true_s"]) and 0.9 * 300.0 <= charged <= 1.1 * 300.0
    # interrupted after the pilot was painted and logged, before the start was written: run again, the
    # same start, and no pilot slice logged twice
    (tmp_path / "tasks.json").unlink()
    _prepare_initial(ds, pool, cfg, 0, CostModel.default(n_classes=3), tmp_path)
    again_tl = read_tasks(tmp_path / "tasks.json")
    assert [(t.task_id, t.case_id, t.index, t.predicted_cost_s) for t in again_tl.tasks] == \
        [(t.task_id, t.case_id, t.index, t.predicted_cost_s) for t in tl.tasks]
    assert again_tl.meta["clock"] == clock
    assert len(read_annotation_log(tmp_path / "pilot" / "annotation_log.jsonl")) == len(log)
    # an older log without the slice (task ids only) is matched through the kept timed tasks
    pilot_tasks = pilot_tasks + [t for b in batches for t in b]
    from medal.costs import append_annotation_log

    bare = tmp_path / "bare.jsonl"
    for r in log:
        append_annotation_log(bare, {"task_id": r["task_id"], "case_id": r["case_id"], "seconds": r["seconds"]})
    keep = [dataclasses.replace(t, predicted_cost_s=took[(t.case_id, t.axis, t.index)]) for t in pilot_tasks]
    again = coldstart_select(ds, tmp_path / "again", budget_s=300.0, cfg=dataclasses.replace(cfg.coldstart, seed=0),
                             pool=pool, pilot_log=bare, keep=keep)
    assert read_tasks(tmp_path / "again" / "tasks.json").meta["cost_prior"]["scale"] == pytest.approx(prior["scale"])
    assert [t.task_id for t in again[:n]] == [t.task_id for t in pilot_tasks]


@pytest.mark.parametrize("method", ["typiclust", "probcover"])
def test_edge_margin_keeps_choices_away_from_the_volume_ends(tmp_path, method):
    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:8]]
    thumbs = ColdstartConfig(representation="thumbnails", method=method, edge_margin=0.0)
    tasks = coldstart_select(ds, tmp_path, budget_s=300.0, cfg=dataclasses.replace(thumbs, edge_margin=0.25), pool=pool)
    assert tasks and sum(t.predicted_cost_s for t in tasks) <= 300.0 + 1e-6
    from medal.data import load_volume

    for t in tasks:
        n = load_volume(ds.case(t.case_id).image).shape[t.axis]
        assert 0.25 <= (t.index + 0.5) / n <= 0.75, (t.case_id, t.index, n)
    free = coldstart_select(ds, tmp_path / "free", budget_s=300.0, cfg=thumbs, pool=pool)
    shapes = {t.case_id: load_volume(ds.case(t.case_id).image).shape for t in free}
    assert any(not 0.25 <= (t.index + 0.5) / shapes[t.case_id][t.axis] <= 0.75 for t in free)  # the margin matters


def test_edge_share_buys_its_share_from_the_volume_ends_within_budget_and_cap(tmp_path):
    from medal.config import ConfigError
    from medal.data import load_volume

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:8]]
    cfg = ColdstartConfig(representation="thumbnails", edge_margin=0.25, edge_share=0.3, max_per_case=2)
    tasks = coldstart_select(ds, tmp_path / "a", budget_s=300.0, cfg=cfg, pool=pool)
    again = coldstart_select(ds, tmp_path / "b", budget_s=300.0, cfg=cfg, pool=pool)
    assert [(t.case_id, t.index) for t in tasks] == [(t.case_id, t.index) for t in again]  # same seed, same picks
    assert sum(t.predicted_cost_s for t in tasks) <= 300.0 + 1e-6
    assert max(sum(t.case_id == c for t in tasks) for c in pool) <= 2
    shapes = {c: load_volume(ds.case(c).image).shape for c in pool}
    end = [not 0.25 <= (t.index + 0.5) / shapes[t.case_id][t.axis] <= 0.75 for t in tasks]
    end_s = sum(t.predicted_cost_s for t, e in zip(tasks, end) if e)
    assert any(end) and not all(end) and end_s >= 0.3 * 300.0 - max(t.predicted_cost_s for t in tasks)
    first = end.index(True)
    assert first < len(tasks) - sum(end)  # spread through the picks, not all at the back
    with pytest.raises(ConfigError, match="edge_share"):
        ColdstartConfig(edge_margin=0.0, edge_share=0.2)
    with pytest.raises(ConfigError, match="edge_share"):
        ColdstartConfig(edge_share=1.0)


def test_ends_margin_takes_the_ends_share_from_the_outermost_slices_only(tmp_path):
    from medal.config import ConfigError
    from medal.data import load_volume

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:8]]
    cfg = ColdstartConfig(representation="thumbnails", edge_margin=0.25, edge_share=0.3, ends_margin=0.1,
                          max_per_case=2)
    tasks = coldstart_select(ds, tmp_path / "a", budget_s=300.0, cfg=cfg, pool=pool)
    shapes = {c: load_volume(ds.case(c).image).shape for c in pool}
    pos = [(t.index + 0.5) / shapes[t.case_id][t.axis] for t in tasks]
    outer = [p < 0.1 or p > 0.9 for p in pos]
    # every pick is either in the outermost tenth (the ends' share) or inside the edge margin, none between
    assert all(o or 0.25 <= p <= 0.75 for o, p in zip(outer, pos)), pos
    assert any(outer) and not all(outer)
    assert sum(t.predicted_cost_s for t in tasks) <= 300.0 + 1e-6
    assert max(sum(t.case_id == c for t in tasks) for c in pool) <= 2
    wide = coldstart_select(ds, tmp_path / "b", budget_s=300.0, cfg=dataclasses.replace(cfg, ends_margin=0.0), pool=pool)
    wide_pos = [(t.index + 0.5) / shapes[t.case_id][t.axis] for t in wide]
    assert any(0.1 <= p < 0.25 or 0.75 < p <= 0.9 for p in wide_pos)  # without it, the ends' share reaches further in
    with pytest.raises(ConfigError, match="ends_margin"):
        ColdstartConfig(edge_margin=0.2, edge_share=0.2, ends_margin=0.3)
    with pytest.raises(ConfigError, match="ends_margin"):
        ColdstartConfig(edge_margin=0.2, ends_margin=0.1)


def test_ends_share_survives_a_pilot_and_timed_batches(tmp_path):
    """As ``medal simulate`` and an expert with ``--pilot`` work: 3 pilot slices, then batches of a third of what
    is left from the front of each new selection, then the rest. The ends' share is of the whole budget, so it is
    bought across the stages (a share of what is left at each stage was starved: batches take the front)."""
    from medal.data import load_volume
    from medal.simulation.simulate import front_batch

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:8]]
    cfg = ColdstartConfig(representation="thumbnails", edge_margin=0.25, edge_share=0.3, ends_margin=0.1,
                          max_per_case=3)
    budget = 300.0
    keep = coldstart_select(ds, tmp_path / "p", budget_s=budget, cfg=cfg, pool=pool, pilot=3)
    for stage in range(3):
        full = coldstart_select(ds, tmp_path / f"b{stage}", budget_s=budget, cfg=cfg, pool=pool, keep=keep)
        left = budget - sum(t.predicted_cost_s for t in keep)
        keep = keep + front_batch(full[len(keep):], left / 3)  # what medal simulate paints as a timed batch
    final = coldstart_select(ds, tmp_path / "final", budget_s=budget, cfg=cfg, pool=pool, keep=keep)
    shapes = {c: load_volume(ds.case(c).image).shape for c in pool}
    outer_s = sum(t.predicted_cost_s for t in final
                  if not 0.1 <= (t.index + 0.5) / shapes[t.case_id][t.axis] <= 0.9)
    assert sum(t.predicted_cost_s for t in final) <= budget + 1e-6
    assert outer_s >= 0.3 * budget - max(t.predicted_cost_s for t in final), outer_s
    assert outer_s <= 0.3 * budget + 1e-6


def test_position_feature_has_its_share_of_the_variance_and_spreads_the_picks(tmp_path):
    from medal.coldstart import with_position

    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 3)) * np.array([1.0, 2.0, 0.5])
    owner, index = ["a"] * 60 + ["b"] * 40, list(range(60)) + list(range(40))
    shapes = {"a": ((8, 8, 60), "a.nii.gz"), "b": ((8, 8, 40), "b.nii.gz")}
    out = with_position(z, owner, index, [2] * 100, shapes, 0.5)
    assert out.shape == (100, 4) and np.array_equal(out[:, :3], z)
    assert out[:, 3].var() == pytest.approx(0.5 * z.var(axis=0).sum())
    assert np.all(np.diff(out[:60, 3]) > 0) and out[0, 3] == pytest.approx(out[60, 3], abs=0.05)  # relative position
    # on real cases: with the position weighted in, the picks are spread more evenly along the slice axis
    ds = load_dataset(sample_dataset())
    base = ColdstartConfig(representation="thumbnails", edge_margin=0.2, pilot=0)
    plain = coldstart_select(ds, tmp_path / "plain", budget_s=120.0, cfg=base)
    again = coldstart_select(ds, tmp_path / "zero", budget_s=120.0, cfg=dataclasses.replace(base, position_weight=0.0))
    assert [(t.case_id, t.index) for t in again] == [(t.case_id, t.index) for t in plain]
    spread = coldstart_select(ds, tmp_path / "pos", budget_s=120.0, cfg=dataclasses.replace(base, position_weight=5.0))
    assert "relative slice position" in read_tasks(tmp_path / "pos" / "tasks.json").meta["representation"]
    from medal.data import load_volume

    def unevenness(tasks):  # squared deviation from equal counts over the three middle fifths of the axis
        pos = [(t.index + 0.5) / load_volume(ds.case(t.case_id).image).shape[t.axis] for t in tasks]
        counts = np.histogram(pos, bins=3, range=(0.2, 0.8))[0]
        return float(((counts - counts.mean()) ** 2).sum())

    assert len(spread) == pytest.approx(len(plain), abs=2) and unevenness(spread) < unevenness(plain)
    with pytest.raises(Exception, match="position_weight"):
        ColdstartConfig(position_weight=-1.0)


def test_position_strata_give_each_band_of_the_axis_its_share_of_the_budget(tmp_path):
    from medal.coldstart import position_strata
    from medal.config import ConfigError
    from medal.data import load_volume

    # bands of relative position between the margins; slices outside the margin join the end bands
    shapes = {"a": ((4, 4, 10), "a.nii.gz")}
    got = position_strata(["a"] * 10, list(range(10)), [2] * 10, shapes, 3, 0.2)
    assert got.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert position_strata(["a"] * 10, list(range(10)), [2] * 10, shapes, 2, 0.0).tolist() == [0] * 5 + [1] * 5

    ds = load_dataset(sample_dataset())
    base = ColdstartConfig(representation="thumbnails", edge_margin=0.2, pilot=0, max_per_case=3, reserve=0.0)
    base = dataclasses.replace(base, axis="axial")  # bands along one axis
    plain = coldstart_select(ds, tmp_path / "plain", budget_s=300.0, cfg=base)
    one = coldstart_select(ds, tmp_path / "one", budget_s=300.0, cfg=dataclasses.replace(base, position_strata=1))
    assert [(t.case_id, t.index) for t in one] == [(t.case_id, t.index) for t in plain]  # 1 band = off
    strat = coldstart_select(ds, tmp_path / "s3", budget_s=300.0, cfg=dataclasses.replace(base, position_strata=3))
    shape = {c.case_id: load_volume(c.image).shape for c in ds.cases}

    def band(t):
        return min(2, max(0, int(((t.index + 0.5) / shape[t.case_id][t.axis] - 0.2) / 0.6 * 3)))

    seconds = np.zeros(3)
    for t in strat:
        seconds[band(t)] += t.predicted_cost_s
    assert 0 < seconds.sum() <= 300.0
    # every band holds about its third: at least its share less two of the dearest slices
    dearest = max(t.predicted_cost_s for t in strat)
    assert np.all(seconds >= 100.0 - 2 * dearest), seconds
    assert sorted(band(t) for t in strat[:3]) == [0, 1, 2]  # round-robin: the first picks cover the axis
    counts = {}
    for t in strat:
        counts[t.case_id] = counts.get(t.case_id, 0) + 1
    assert max(counts.values()) <= 3 and len({(t.case_id, t.index) for t in strat}) == len(strat)
    with pytest.raises(ConfigError, match="position_strata"):
        ColdstartConfig(position_strata=-1)
    with pytest.raises(ConfigError, match="typiclust only"):
        ColdstartConfig(method="probcover", position_strata=3)


def test_plane_quota_gives_each_plane_its_share_of_the_budget(tmp_path):
    from medal.config import ConfigError

    ds = load_dataset(sample_dataset())
    base = ColdstartConfig(representation="thumbnails", edge_margin=0.2, pilot=0, max_per_case=3, reserve=0.0,
                           axis=("axial", "coronal", "sagittal"))
    pooled = coldstart_select(ds, tmp_path / "pooled", budget_s=300.0, cfg=base)
    quota = coldstart_select(ds, tmp_path / "quota", budget_s=300.0, cfg=dataclasses.replace(base, plane_quota=True))
    assert len({t.axis for t in pooled}) >= 2
    seconds = {}
    for t in quota:
        seconds[t.axis] = seconds.get(t.axis, 0.0) + t.predicted_cost_s
    assert len(seconds) == 3 and 0 < sum(seconds.values()) <= 300.0
    # every plane holds about its third: at least its share less two of the dearest slices
    dearest = max(t.predicted_cost_s for t in quota)
    assert min(seconds.values()) >= 100.0 - 2 * dearest, seconds
    assert len({t.axis for t in quota[:3]}) == 3  # round-robin: the first picks (a pilot) hold every plane
    counts = {}
    for t in quota:
        counts[t.case_id] = counts.get(t.case_id, 0) + 1
    assert max(counts.values()) <= 3 and len({(t.case_id, t.axis, t.index) for t in quota}) == len(quota)
    # one plane: the quota changes nothing
    one = dataclasses.replace(base, axis="axial")
    plain = coldstart_select(ds, tmp_path / "one", budget_s=300.0, cfg=one)
    same = coldstart_select(ds, tmp_path / "one_q", budget_s=300.0, cfg=dataclasses.replace(one, plane_quota=True))
    assert [(t.case_id, t.index) for t in same] == [(t.case_id, t.index) for t in plain]
    with pytest.raises(ConfigError, match="plane_quota"):
        ColdstartConfig(method="probcover", plane_quota=True)
    with pytest.raises(ConfigError, match="plane_quota"):
        ColdstartConfig(plane_quota="yes")


def test_reserve_queue_follows_the_budget_slices_and_leaves_them_unchanged(tmp_path):
    from collections import Counter

    from medal.config import ConfigError

    ds = load_dataset(sample_dataset())
    base = ColdstartConfig(representation="thumbnails", pilot=0, max_per_case=2, reserve=0.0)
    plain = coldstart_select(ds, tmp_path / "plain", budget_s=200.0, cfg=base)
    both = coldstart_select(ds, tmp_path / "res", budget_s=200.0, cfg=dataclasses.replace(base, reserve=0.5))
    meta = read_tasks(tmp_path / "res" / "tasks.json").meta
    n = meta["reserve_tasks"]
    assert n > 0 and len(both) == len(plain) + n
    assert [(t.case_id, t.index) for t in both[:len(plain)]] == [(t.case_id, t.index) for t in plain]
    extra = both[len(plain):]
    assert meta["reserve_s"] == pytest.approx(sum(t.predicted_cost_s for t in extra))
    assert 0 < meta["reserve_s"] <= 100.0 + 1e-6
    assert meta["predicted_s"] == pytest.approx(sum(t.predicted_cost_s for t in plain))  # the budget's, not the reserve's
    assert len({(t.case_id, t.index) for t in both}) == len(both)  # nothing chosen twice ...
    assert max(Counter(t.case_id for t in both).values()) <= 2  # ... and the per-volume cap holds over both
    assert read_tasks(tmp_path / "plain" / "tasks.json").meta["reserve_tasks"] == 0
    pilot = coldstart_select(ds, tmp_path / "pilot", budget_s=200.0, cfg=dataclasses.replace(base, reserve=0.5), pilot=3)
    assert len(pilot) == 3 and read_tasks(tmp_path / "pilot" / "tasks.json").meta["reserve_tasks"] == 0
    with pytest.raises(ConfigError, match="coldstart.reserve"):
        ColdstartConfig(reserve=-1.0)


def test_simulated_cold_start_paints_the_reserve_while_its_clock_allows(tmp_path):
    """With ``coldstart.reserve`` the simulated expert's clock goes on into the reserve queue: the same
    pilot and budget slices are painted, then reserve slices while the true seconds allow, so the start
    spends at least what it spent without one and stays within one slice of the budget."""
    from medal.config import config_from_dict
    from medal.costs import CostModel
    from medal.simulation.oracle import oracle_annotate
    from medal.simulation.simulate import _prepare_initial

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:6]]
    starts = {}
    for reserve in (0.0, 1.0):
        cfg = config_from_dict({"coldstart": {"representation": "thumbnails", "pilot": 3, "max_per_case": 5,
                                              "reserve": reserve},
                                "simulation": {"initial": "coldstart", "initial_budget_s": 300.0}})
        _prepare_initial(ds, pool, cfg, 0, CostModel.default(n_classes=3), tmp_path / str(reserve))
        starts[reserve] = read_tasks(tmp_path / str(reserve) / "tasks.json")
    plain, res = starts[0.0], starts[1.0]
    assert res.meta["reserve_tasks"] == 0  # what was painted is the start; the unpainted reserve is dropped
    assert res.meta["clock"]["reserve"] > 0 and plain.meta["clock"]["reserve"] == 0
    key = [(t.case_id, t.index) for t in plain.tasks]
    assert [(t.case_id, t.index) for t in res.tasks[:len(key)]] == key  # the same start, then the reserve's slices
    assert len(res.tasks) == len(key) + res.meta["clock"]["reserve_painted"]
    assert res.meta["clock"]["true_s"] >= plain.meta["clock"]["true_s"]
    charged = oracle_annotate(res, ds, tmp_path / "check", cost_model=CostModel.default(n_classes=3))
    # a slice starts only if its prediction fits what is left: the start overshoots by one slice's error at most
    worst = max(0.0, *(charged["per_task"][t.task_id] - t.predicted_cost_s for t in res.tasks))
    assert charged["seconds"] == pytest.approx(res.meta["clock"]["true_s"]) and charged["seconds"] <= 300.0 + worst + 1e-6


def test_slice_clusters_cluster_the_slices_asked_only():
    from medal.coldstart import slice_clusters

    ds = load_dataset(sample_dataset())
    cases = [c.case_id for c in ds.cases[:3]]
    asked = [(c, 2, i) for c in cases for i in range(5, 15)] + [("no_such_case", 2, 0)]
    cfg = ColdstartConfig(representation="thumbnails")
    cluster, typ, size = slice_clusters(ds, *zip(*asked), k=4, cfg=cfg)
    assert cluster[-1] == -1 and typ[-1] == 0 and size[-1] == 0  # a case the dataset lacks: no cluster
    got = cluster[:-1]
    assert set(got.tolist()) <= set(range(4)) and len(set(got.tolist())) >= 2
    np.testing.assert_array_equal(size[:-1], np.bincount(got)[got])  # sizes count the slices asked
    assert (typ[:-1] > 0).all()
    # the same call gives the same clusters (seeded k-means, cached representation)
    again, _, _ = slice_clusters(ds, *zip(*asked), k=4, cfg=cfg)
    np.testing.assert_array_equal(again, cluster)


def test_a_case_stored_in_another_axis_order_looks_the_same_to_the_cold_start(tmp_path):
    """A real case and its twin stored with the first two axes swapped and reversed (same voxels, same world
    positions). With data.orientation RAS (the default) every slice of the twin gets the same representation as
    the matching slice of the original, and the same anatomical position; with null they differ."""
    import sys
    from pathlib import Path

    from medal.config import ColdstartConfig, DataConfig
    from medal.coldstart.select import _describe, _relative_position, slice_embeddings
    from medal.data import load_dataset, load_volume, sample_dataset, save_volume

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from mixed_orientation import turn

    src = load_dataset(sample_dataset()).cases[:2]
    root = tmp_path / "ds"
    a = load_volume(src[0].image)
    save_volume(a, root / "imagesTr" / "a.nii.gz")
    save_volume(turn(a), root / "imagesTr" / "b.nii.gz")
    save_volume(load_volume(src[1].image), root / "imagesTr" / "c.nii.gz")
    ds = load_dataset(root)
    cfg = ColdstartConfig(representation="thumbnails")
    n0, n1, n2 = a.shape
    # axial: axis 2 in both files; sagittal (Right-Left): axis 0 of a, axis 1 of b, reversed
    ids = ["a"] * n2 + ["b"] * n2 + ["a"] * n0 + ["b"] * n0
    axes = [2] * (2 * n2) + [0] * n0 + [1] * n0
    index = list(range(n2)) * 2 + list(range(n0)) + [n0 - 1 - i for i in range(n0)]
    for orientation, same in (("RAS", True), (None, False)):
        z, found = slice_embeddings(ds, ids, axes, index, cfg=cfg, data_cfg=DataConfig(orientation=orientation))
        assert found.all()
        ax_a, ax_b = z[:n2], z[n2:2 * n2]
        sag_a, sag_b = z[2 * n2:2 * n2 + n0], z[2 * n2 + n0:]
        assert np.allclose(ax_a, ax_b, atol=1e-6) == same and np.allclose(sag_a, sag_b, atol=1e-6) == same
    _, _, _, owner, idx, ax, shapes, _, _, _ = _describe(ds, ds.cases, cfg, DataConfig(), ("0", "1", "2"))
    pos = _relative_position(owner, idx, ax, shapes)
    where = {(o, a_, i): p for o, a_, i, p in zip(owner, ax, idx, pos)}
    assert all(np.isclose(where[("a", 0, i)], where[("b", 1, n0 - 1 - i)]) for i in range(n0))


def test_the_encoder_cache_tells_an_axis_order_from_another(tmp_path, monkeypatch):
    """The contrastive encoder is cached by the pool's image bytes and its settings: slices taken in
    data.orientation's order are another encoder's input when a case is reoriented (another key), and the same
    encoder when every case is stored in that order already (the key of a run without the option)."""
    import json
    import sys
    from pathlib import Path

    from medal.config import ColdstartConfig, DataConfig
    from medal.coldstart.select import coldstart_select
    from medal.data import load_dataset, load_volume, sample_dataset, save_volume

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from mixed_orientation import turn

    monkeypatch.setenv("MEDAL_CACHE_DIR", str(tmp_path / "cache"))
    src = load_dataset(sample_dataset()).cases[:3]
    mixed, plain = tmp_path / "mixed", tmp_path / "plain"
    for i, c in enumerate(src):
        v = load_volume(c.image)
        save_volume(turn(v) if i == 0 else v, mixed / "imagesTr" / f"{c.case_id}.nii.gz")
        save_volume(v, plain / "imagesTr" / f"{c.case_id}.nii.gz")
    cfg = ColdstartConfig(encoder_steps=5)

    def key(root, orientation, n):
        coldstart_select(load_dataset(root), tmp_path / f"r{n}", budget_s=60.0, cfg=cfg,
                         data_cfg=DataConfig(orientation=orientation))
        return json.loads((tmp_path / f"r{n}" / "tasks.json").read_text())["representation"].split("key ")[1]

    assert key(mixed, "RAS", 0) != key(mixed, None, 1)
    assert key(plain, "RAS", 2) == key(plain, None, 3)
