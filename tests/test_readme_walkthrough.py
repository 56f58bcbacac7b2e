"""The README's "Your own project, from zero labels" block, run as written.

The commands are read from README.md, not copied here, so the README cannot drift from what works. The
dataset is what a user starts with: images and a ``dataset.json`` naming the classes, no label file at
all. ``medal annotate`` (napari) is the one step replaced: the ground truth of the same real cases
paints each round's tasks (``medal.simulation.oracle_annotate``, which writes the files the plugin
writes). Every ``coldstart`` and ``round`` gets a small config (a 60-step encoder, a tiny U-Net), the
only change to the commands.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from medal.costs import CostModel
from medal.data import load_dataset, load_volume, sample_dataset, save_volume
from medal.simulation import oracle_annotate
from medal.tasks import read_tasks

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Your own project, from zero labels"
TINY = {"model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
        "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 3,
                     "val_fraction": 0.0, "num_threads": 1},
        "uncertainty": {"mc_samples": 2, "roi_size": [16, 16, 16]},
        "coldstart": {"encoder_steps": 60}}


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    block = re.search(r"```bash\n(.*?)```", text.split(HEADING, 1)[1], re.S)
    assert block, "the walkthrough section has no bash block"
    lines = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    return [shlex.split(ln) for ln in lines if ln]


def medal(args, cwd):
    out = subprocess.run([sys.executable, "-m", "medal.cli", *args], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "MEDAL_CACHE_DIR": str(Path(cwd) / "cache")})
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.returncode == 0, f"medal {' '.join(args)}: {out.stderr}"
    return out


def test_the_readme_walkthrough_runs_from_images_alone(tmp_path):
    commands = readme_commands()
    verbs = [c[1] for c in commands]
    assert all(c[0] == "medal" for c in commands)
    assert verbs == ["dataset", "coldstart", "annotate", "ingest", "round", "annotate", "ingest", "report"], verbs

    sample = load_dataset(sample_dataset())
    cases = sample.cases[:5]
    user = tmp_path / "MyDataset"  # what a user brings: images and the class names, no labels
    for case in cases:
        save_volume(load_volume(case.image), user / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(load_volume(case.label), tmp_path / "truth" / f"{case.case_id}.nii.gz")  # outside it
    names = {str(v): n for v, n in sample.label_map.names.items()}
    (user / "dataset.json").write_text(json.dumps({"name": "walkthrough", "labels": names}))
    truth = load_dataset(user, labels_dir=tmp_path / "truth")  # the oracle's view: the same images, with labels
    assert not load_dataset(user).labelled and len(truth.labelled) == 5
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))

    painted = []
    for args in commands:
        args = args[1:]
        if args[0] == "annotate":  # the one step a person does: the ground truth paints instead
            rd = tmp_path / args[1]
            tasks = read_tasks(rd / "tasks.json")
            assert tasks.tasks, f"{rd}: no tasks to paint"
            oracle_annotate(tasks, truth, rd / "annotations", cost_model=CostModel.default(truth.n_classes))
            painted.append(len(tasks.tasks))
            continue
        if args[0] in ("coldstart", "round"):
            args = [*args, "--config", str(cfg)]
        out = medal(args, cwd=tmp_path)
        if args[0] == "dataset":
            assert "cases: 5 (0 labelled, 5 unlabelled)" in out.stdout, out.stdout

    run = tmp_path / "run"
    assert len(painted) == 2 and all(painted)
    # what the rounds trained on is exactly what was painted: the truth inside tasks, 255 elsewhere
    n_labelled = 0
    for case in cases:
        path = run / "labels" / f"{case.case_id}.nii.gz"
        if not path.exists():
            continue
        lab = load_volume(path).array
        gt = load_volume(truth.case(case.case_id).label).array
        done = lab != 255
        n_labelled += int(done.sum())
        assert np.array_equal(lab[done], gt[done]), case.case_id
    assert n_labelled > 0
    # round 1 trained (from scratch: a cold start has no model) on exactly the cases round 0 painted
    manifest = json.loads((run / "round_001" / "manifest.json").read_text())
    labelled = sorted(p.name.removesuffix(".nii.gz") for p in (run / "labels").glob("*.nii.gz"))
    assert sorted(manifest["inputs"]["train_cases"]) == labelled
    assert manifest["checkpoint"]["warm_start"] is None and (run / "round_001" / "model.pt").is_file()
    # round 1 asks for units round 0 did not (no slice is bought twice)
    first = {(t.case_id, t.axis, t.index) for t in read_tasks(run / "round_000" / "tasks.json").tasks}
    second = {(t.case_id, t.axis, t.index) for t in read_tasks(run / "round_001" / "tasks.json").tasks}
    assert second and not first & second
    report = (run / "report.md").read_text()
    assert "round_001" in report, report[:500]
