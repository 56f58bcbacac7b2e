import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medal.cli import main
from medal.data import sample_dataset

MEDAL = [sys.executable, "-m", "medal.cli"]


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from medal.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'nibabel' in sys.modules)"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert "dataset" in out.stdout
    assert elapsed < 5


def test_console_script_installed():
    exe = Path(sys.executable).parent / "medal"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("medal ")


def test_dataset_check_clean_json(capsys):
    rc = main(["dataset", "check", str(sample_dataset()), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"] and len(report["cases"]) == 20
    assert report["cases"][0]["spacing"] == [1.0, 1.0, 1.0]
    # what a run with the defaults would build: 1 mm grid, RAS, strides planned for isotropic voxels
    assert report["plan"] == {"spacing": [1.0, 1.0, 1.0], "spacing_setting": "median", "orientation": "RAS",
                              "strides": [2, 2, 2], "strides_auto": True, "patch_size": [32, 48, 32],
                              "patch_mm": [32.0, 48.0, 32.0], "median_case": [36, 50, 35], "config": "defaults"}


def test_dataset_check_with_a_config_notes_its_patch_and_refuses_a_bad_one(tmp_path, capsys):
    """`dataset check --config`: the notes are about that config's plan (a patch deeper than the sample's cases is
    mostly padding); a config with a typo is one line naming it, before any case is read."""
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("training:\n  patch_size: [32, 48, 64]\nuncertainty:\n  roi_size: [32, 48, 64]\n")
    assert main(["dataset", "check", str(sample_dataset()), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert ("  network: 1 x 1 x 1 mm voxels (data.spacing: median), RAS axes, strides [2, 2, 2] (planned: "
            "model.strides auto), patch 32 x 48 x 64 voxels (32 x 48 x 64 mm), 85% of the median case (36 x 50 x 35 "
            "voxels)\n") in out
    assert "training.patch_size [32, 48, 64] is larger than the median case" in out and "along axis 2" in out
    cfg.write_text("training:\n  patch_sise: [32, 48, 64]\n")
    out = subprocess.run([*MEDAL, "dataset", "check", str(sample_dataset()), "--config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "patch_sise" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_dataset_check_bad_exits_nonzero_and_names_file(phantom_dataset):
    img = phantom_dataset / "imagesTr" / "phantom_001.nii.gz"
    img.write_bytes(img.read_bytes()[:200])
    out = subprocess.run([*MEDAL, "dataset", "check", str(phantom_dataset), "-v"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "imagesTr/phantom_001.nii.gz: file is truncated" in out.stdout
    assert "phantom_000: shape (24, 28, 20)" in out.stdout  # kept going past the bad case
    assert "phantom_002: shape (24, 28, 20)" in out.stdout


@pytest.mark.slow
def test_demo_runs_a_short_simulation_and_writes_tasks_report_plot(tmp_path):
    """``medal demo --quick``: the demo's whole pipeline (every stage, file and report ``make demo`` writes)
    with less training; ``make demo`` itself (3 min) is run before every submission, not in the suite."""
    from medal.config import config_from_dict
    from medal.config import _merge
    from medal.demo import DEMO_SETTINGS, QUICK_SETTINGS

    quick = config_from_dict(_merge(DEMO_SETTINGS, QUICK_SETTINGS))
    full = config_from_dict(DEMO_SETTINGS)
    assert quick.training.max_epochs < full.training.max_epochs and quick.selection == full.selection
    assert quick.simulation == full.simulation and quick.model == full.model
    out = subprocess.run([*MEDAL, "demo", "--quick", "--out", str(tmp_path / "demo")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "quick:" in out.stdout
    assert "cases: 20 (20 labelled" in out.stdout and "OK: 20 cases checked" in out.stdout
    assert "# medal simulation report" in out.stdout
    demo = tmp_path / "demo"
    assert (demo / "report.md").stat().st_size > 200
    assert (demo / "dice_vs_seconds.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(demo.glob("*/seed_0/round_00[01]/tasks.json"))) == 6  # 3 rows x 2 rounds
    assert len((demo / "results.csv").read_text().strip().splitlines()) == 1 + 3 * 3
    assert "| **default** |" in (demo / "report.md").read_text()  # medal's default against both baselines
    run_report = (demo / "default" / "seed_0" / "report.md").read_text()
    assert "**Recommendation:" in run_report and (demo / "default" / "seed_0" / "report" / "rounds.png").is_file()


def test_group_without_action_prints_its_help(capsys):
    assert main(["dataset"]) == 2
    assert "check" in capsys.readouterr().out


def test_mistyped_paths_and_a_negative_round_are_one_line_errors_naming_them(tmp_path, capsys):
    ds = str(sample_dataset())
    cases = [(["costs", "fit", str(tmp_path / "log.jsonl"), "--classes", "3", "--out", str(tmp_path / "c.json")],
              f"{tmp_path / 'log.jsonl'}: annotation log not found"),
             (["select", ds, "--scores", str(tmp_path / "scores"), "--out", str(tmp_path / "t.json")],
              f"{tmp_path / 'scores'}: no such scores folder"),
             (["round", ds, "--run", str(tmp_path / "run"), "--index", "-1"], "--index: a round number is 0, 1, 2, ..."),
             # a mistyped --labels once read as "no label anywhere": train said no case had annotated voxels,
             # select would have offered already painted units again
             (["train", ds, "--labels", str(tmp_path / "lab"), "--out", str(tmp_path / "m.pt")],
              f"{tmp_path / 'lab'}: no such labels folder"),
             (["select", ds, "--scores", str(tmp_path), "--labels", str(tmp_path / "lab"), "--out", str(tmp_path / "t")],
              f"{tmp_path / 'lab'}: no such labels folder"),
             (["report", str(tmp_path / "run")], f"{tmp_path / 'run'}: no such run folder")]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(f"medal: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "t.json").exists() and not (tmp_path / "m.pt").exists()
    assert main(["dataset", "check", ds, "--labels", str(tmp_path / "lab")]) == 1  # it used to say OK, 0 labelled
    assert f"PROBLEM {tmp_path / 'lab'}: no such labels folder" in capsys.readouterr().out
