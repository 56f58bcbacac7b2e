from pathlib import Path

import pytest

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
