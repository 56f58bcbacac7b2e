import os
from pathlib import Path

import pytest


def _one_share_of_the_cores() -> None:
    """Under ``pytest -n N`` give each worker (and the ``medal`` subprocesses it starts) 1/N of the cores.

    torch otherwise starts one OpenMP thread per core in every worker: on the 2-core CI machine two workers
    ran four busy threads, and eight of the slowest tests took 200 s instead of 158 s. A value set by the
    caller wins. It must be set before torch is imported, hence at the top of this file.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 0:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, share)


_one_share_of_the_cores()

SHARED_HIPPOCAMPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hippocampus"


@pytest.fixture(scope="session")
def shared_hippocampus() -> Path:
    """The 220 real hippocampus cases beside the checkout (skips where they are absent)."""
    if not (SHARED_HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"{SHARED_HIPPOCAMPUS} not present")
    return SHARED_HIPPOCAMPUS


@pytest.fixture
def phantom_dataset(tmp_path):
    from medal.testing import write_phantom_dataset

    return write_phantom_dataset(tmp_path / "phantoms", n_cases=3)


@pytest.fixture
def tiny_model_cfg():
    """A small U-Net config that trains in seconds on the CPU."""
    from medal.config import ModelConfig

    return ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, dropout=0.25, head_channels=8)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """medal caches scanned label values under $MEDAL_CACHE_DIR: keep the tests' cache out of $HOME
    (subprocesses inherit it)."""
    import os

    old = os.environ.get("MEDAL_CACHE_DIR")
    os.environ["MEDAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("medal-cache"))
    yield
    if old is None:
        os.environ.pop("MEDAL_CACHE_DIR", None)
    else:
        os.environ["MEDAL_CACHE_DIR"] = old
