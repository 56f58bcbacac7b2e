"""Batch scoring: local vs a real local Ray cluster, kill-and-resume, failure isolation, staleness."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medal.config import DataConfig, ModelConfig, UncertaintyConfig
from medal.data import load_dataset, sample_dataset
from medal.execution import KEY_FILE, LocalExecutor, RayExecutor, ScoreSpec, score_dataset
from medal.model import build_model, save_checkpoint

UCFG = UncertaintyConfig(mc_samples=3, measures=("entropy", "bald"), sample_batch=3)
MCFG = ModelConfig(channels=(8, 16), strides=(2,), head_channels=8)


def _checkpoint(path, seed=0):
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model(MCFG, out_channels=3), MCFG, in_channels=1, out_channels=3)


def _digests(out: Path) -> dict:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "scores").rglob("*.nii.gz"))}


@pytest.fixture
def small_dataset(tmp_path):
    """Five real sample cases copied into an MSD folder of their own."""
    src = sample_dataset()
    root = tmp_path / "data"
    ids = sorted(p.name for p in (src / "imagesTr").iterdir())[:5]
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
        for n in ids:
            shutil.copy(src / sub / n, root / sub / n)
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in ids]
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _spec(ckpt, out):
    return ScoreSpec.make(ckpt, out, UCFG, DataConfig(), threads=1)


@pytest.mark.slow
def test_ray_matches_local_exactly(tmp_path, small_dataset):
    ckpt = _checkpoint(tmp_path / "m.pt")
    cases = load_dataset(small_dataset).cases
    local = score_dataset(_spec(ckpt, tmp_path / "local"), cases, LocalExecutor(1, threads=1), progress=False)
    ray_rep = score_dataset(_spec(ckpt, tmp_path / "ray"), cases, RayExecutor(2, num_cpus=2), progress=False)
    assert local.ok and ray_rep.ok and ray_rep.count("scored") == 5
    a, b = _digests(tmp_path / "local"), _digests(tmp_path / "ray")
    assert len(a) == 5 * 4 and a == b  # byte-identical outputs (prediction, probs, 2 measures)


def test_two_local_workers_match_one(tmp_path, small_dataset):
    ckpt = _checkpoint(tmp_path / "m.pt")
    cases = load_dataset(small_dataset).cases[:3]
    one = score_dataset(_spec(ckpt, tmp_path / "one"), cases, LocalExecutor(1, threads=1), progress=False)
    two = score_dataset(_spec(ckpt, tmp_path / "two"), cases, LocalExecutor(2, threads=1), progress=False)
    assert one.ok and two.ok and _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_corrupt_case_is_reported_and_others_finish(tmp_path, small_dataset):
    ckpt = _checkpoint(tmp_path / "m.pt")
    ds = load_dataset(small_dataset)
    bad = ds.cases[2].image
    bad.write_bytes(bad.read_bytes()[:300])
    rep = score_dataset(_spec(ckpt, tmp_path / "out"), ds.cases, LocalExecutor(1, threads=1), retries=2,
                        progress=False)
    assert not rep.ok and rep.count("scored") == 4
    fail = json.loads((tmp_path / "out" / "scores" / "failures.json").read_text())
    assert list(fail) == [ds.cases[2].case_id] and fail[ds.cases[2].case_id]["attempts"] == 3
    assert "truncated" in fail[ds.cases[2].case_id]["error"]


def test_rerun_skips_done_and_checkpoint_change_makes_outputs_stale(tmp_path, small_dataset):
    ds = load_dataset(small_dataset)
    cases = ds.cases[:2]
    out = tmp_path / "out"
    ckpt = _checkpoint(tmp_path / "m.pt")
    first = score_dataset(_spec(ckpt, out), cases, LocalExecutor(1, threads=1), progress=False)
    d1 = _digests(out)
    again = score_dataset(_spec(ckpt, out), cases, LocalExecutor(1, threads=1), progress=False)
    assert first.count("scored") == 2 and again.count("cached") == 2 and _digests(out) == d1
    other = _checkpoint(tmp_path / "m2.pt", seed=1)
    stale = score_dataset(_spec(other, out), cases, LocalExecutor(1, threads=1), progress=False)
    assert stale.count("scored") == 2 and _digests(out) != d1
    key = json.loads((out / "scores" / cases[0].case_id / KEY_FILE).read_text())["key"]
    from medal.model import file_hash

    assert key["checkpoint_sha256"] == file_hash(other)


@pytest.mark.slow
def test_killed_run_resumes_with_identical_outputs_and_no_partial_files(tmp_path, small_dataset):
    ckpt = _checkpoint(tmp_path / "m.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("uncertainty:\n  mc_samples: 3\n  sample_batch: 3\n  measures: [entropy, bald]\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd_for(out):
        return [sys.executable, "-m", "medal.cli", "score", str(small_dataset), "--checkpoint", str(ckpt),
                "--out", str(out), "--config", str(cfg)]

    clean = tmp_path / "clean"  # the same command, never interrupted
    assert subprocess.run(cmd_for(clean), capture_output=True, env=env).returncode == 0
    out = tmp_path / "killed"
    cmd = cmd_for(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "scores").glob(f"*/{KEY_FILE}"))) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "scores").glob(f"*/{KEY_FILE}")))
    assert 2 <= done < 5
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert f"{5 - done} scored, {done} already up to date" in res.stdout
    assert _digests(out) == _digests(clean)
    assert not [p for p in (out / "scores").rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_region_tables_on_ray_match_local_and_the_in_process_table(tmp_path, small_dataset):
    import numpy as np

    from medal.config import MedalConfig
    from medal.costs import CostModel
    from medal.execution import RegionSpec, load_region_tables
    from medal.selection.api import candidate_table

    ckpt = _checkpoint(tmp_path / "m.pt")
    ds = load_dataset(small_dataset)
    score_dataset(_spec(ckpt, tmp_path / "run"), ds.cases, LocalExecutor(1, threads=1), progress=False)
    cfg = MedalConfig()
    spec = RegionSpec.make(tmp_path / "run" / "scores", tmp_path / "local", cfg, n_classes=3)
    rl = score_dataset(spec, ds.cases, LocalExecutor(1), progress=False, folder="regions")
    rr = score_dataset(RegionSpec.make(tmp_path / "run" / "scores", tmp_path / "ray", cfg, n_classes=3), ds.cases,
                       RayExecutor(2, num_cpus=2), progress=False, folder="regions")
    assert rl.ok and rr.ok and rl.count("scored") == 5
    a, b = load_region_tables(tmp_path / "local"), load_region_tables(tmp_path / "ray")
    ref, _, _ = candidate_table(ds, tmp_path / "run" / "scores", regions_cfg=cfg.regions,
                                cost_model=CostModel.default(3))
    for t in (b, ref):
        assert list(t.columns) == list(a.columns) and len(t) == len(a)
        for k in a.columns:
            assert np.array_equal(a[k], t[k]), k
    again = score_dataset(spec, ds.cases, LocalExecutor(1), progress=False, folder="regions")
    assert again.count("cached") == 5
