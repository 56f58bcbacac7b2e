"""The 100% line of the full config: the same model trained on every pool label (sum of the rounds' steps)."""
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, "benchmarks")
import torch  # noqa: E402

from label_efficiency import SPLITS, round_steps, same_config_full_dice  # noqa: E402
from medal.config import load_config  # noqa: E402
from medal.data import load_dataset  # noqa: E402
from medal.simulation import split_cases  # noqa: E402

torch.set_num_threads(1)
cfg = load_config(sys.argv[1])
sim = dataclasses.replace(cfg.simulation, split_file=str(SPLITS["final"]))
cfg = dataclasses.replace(cfg, simulation=sim)
ds = load_dataset(sys.argv[2])
pool, test = split_cases(ds, sim)
t0 = time.perf_counter()
steps = sum(round_steps(cfg))
d = same_config_full_dice(ds, cfg, pool, test, steps)
print(f"full_dice {d:.5f} steps {steps} pool {len(pool)} test {len(test)} wall_s {time.perf_counter() - t0:.0f}", flush=True)
