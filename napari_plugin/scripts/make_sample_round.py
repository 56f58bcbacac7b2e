"""Rebuild the plugin's bundled sample round (``src/medal_napari/sample_round/``).

Trains a small U-Net on 19 of medal's 20 bundled hippocampus cases (not on the one to annotate),
scores the held-out case with MC dropout, and selects a few slice tasks and a few supervoxel tasks
for it: a real round, just small. About a minute on 2 CPU cores.

    python napari_plugin/scripts/make_sample_round.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from medal.data import sample_dataset

CASE = "hippocampus_004"
OUT = Path(__file__).resolve().parents[1] / "src" / "medal_napari" / "sample_round"
CONFIG = {
    "model": {"channels": [8, 16, 32], "strides": [2, 2], "head_channels": 16, "dropout": 0.2},
    "training": {"patch_size": [32, 48, 32], "batch_size": 4, "max_epochs": 6, "iterations_per_epoch": 20,
                 "val_fraction": 0.0, "learning_rate": 0.005},
    "uncertainty": {"mc_samples": 10, "measures": ["entropy", "bald"]},
    # medal's default value (class-stratified entropy, foreground quota, expected cost): the first tasks
    # a radiologist sees hold hippocampus
    "regions": {"measure": "entropy", "value": "class_entropy", "supervoxel_size_mm": 6.0},
    # two selections joined into one file: no reserve queue (it must be the file's last tasks)
    "selection": {"reserve": 0.0},
}


def medal(*args):
    subprocess.run([sys.executable, "-m", "medal.cli", *map(str, args)], check=True)


def main() -> int:
    ds = sample_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "config.yaml"
        cfg.write_text(yaml.safe_dump(CONFIG))
        labels = tmp / "labels"
        labels.mkdir()
        for p in (ds / "labelsTr").glob("*.nii.gz"):
            if not p.name.startswith(CASE):
                shutil.copy(p, labels / p.name)
        medal("train", ds, "--out", tmp / "model.pt", "--config", cfg, "--labels", labels)
        medal("score", ds, "--checkpoint", tmp / "model.pt", "--out", tmp, "--config", cfg, "--cases", CASE)
        medal("select", ds, "--scores", tmp / "scores", "--out", tmp / "slices", "--budget", 150, "--kind", "slice",
              "--config", cfg, "--labels", tmp / "no_labels")
        medal("select", ds, "--scores", tmp / "scores", "--out", tmp / "sv", "--budget", 90, "--kind", "supervoxel",
              "--config", cfg, "--labels", tmp / "no_labels")
        slices = json.loads((tmp / "slices" / "tasks.json").read_text())
        sv = json.loads((tmp / "sv" / "tasks.json").read_text())
        tasks = slices["tasks"] + sv["tasks"]
        for n, t in enumerate(tasks):
            t["task_id"] = f"t{n:04d}"
        if OUT.exists():
            shutil.rmtree(OUT)
        (OUT / "scores" / CASE).mkdir(parents=True)
        (OUT / "masks").mkdir()
        for name in ("prediction", "entropy"):
            shutil.copy(tmp / "scores" / CASE / f"{name}.nii.gz", OUT / "scores" / CASE / f"{name}.nii.gz")
        shutil.copy(tmp / "sv" / "masks" / f"{CASE}.nii.gz", OUT / "masks" / f"{CASE}.nii.gz")
        body = {k: v for k, v in slices.items() if k not in ("tasks", "dataset_root", "scores_dir", "skipped")}
        body.update({"dataset_root": "MEDAL_SAMPLE", "strategy": "knapsack (slices) + knapsack (supervoxels)",
                     "budget_s": slices["budget_s"] + sv["budget_s"],
                     "predicted_s": slices["predicted_s"] + sv["predicted_s"], "tasks": tasks})
        (OUT / "tasks.json").write_text(json.dumps(body, indent=2) + "\n")
    shutil.copy(ds / "LICENSE", OUT / "LICENSE")
    (OUT / "README.md").write_text(
        f"# medal sample round\n\nA ready-made annotation round for case `{CASE}` of medal's bundled sample: "
        "MC-dropout entropy and prediction of a small U-Net trained on the other 19 bundled cases, "
        f"{len(slices['tasks'])} slice tasks and {len(sv['tasks'])} supervoxel tasks chosen by medal's default selection (class-stratified entropy per expected second, knapsack).\n\n"
        "Derived from the Medical Segmentation Decathlon, Task04 Hippocampus (Antonelli et al., Nature Communications 13, 4128, 2022; Simpson et al., 2019, "
        "arXiv:1902.09063; data from Vanderbilt University Medical Center), licensed CC-BY-SA 4.0 (see LICENSE); "
        "this derived data is shared under the same licence.\n\n"
        "Rebuilt by `python napari_plugin/scripts/make_sample_round.py`.\n")
    print(f"wrote {OUT}: {len(tasks)} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
