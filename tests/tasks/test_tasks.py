import json

import pytest

from medal.data import sample_dataset
from medal.tasks import Task, TaskError, read_tasks, write_tasks


def _task(**kw):
    base = dict(task_id="t0000", case_id="hippocampus_004", image="imagesTr/hippocampus_004.nii.gz", kind="slice",
                axis=2, index=5, supervoxel=-1, bbox=[[0, 0, 5], [36, 52, 6]], score=1.5, predicted_cost_s=20.0,
                strategy="knapsack")
    base.update(kw)
    return Task(**base)


def test_round_trip(tmp_path):
    tasks = [_task(), _task(task_id="t0001", kind="supervoxel", index=-1, supervoxel=7, mask="masks/h.nii.gz",
                            bbox=[[1, 2, 3], [4, 5, 6]], status="done")]
    p = write_tasks(tmp_path / "tasks.json", tasks, dataset_root=sample_dataset(), meta={"budget_s": 100.0})
    back = read_tasks(p)
    assert back.tasks == tasks and back.meta["budget_s"] == 100.0
    assert back.image_path(back.tasks[0]).is_file()
    assert back.mask_path(back.tasks[1]) == (tmp_path / "masks" / "h.nii.gz").resolve()


@pytest.mark.parametrize("reserve, n", [(2, 2), (0, 0), (None, 0), (9, 3), (-1, 0), ("two", 0), ([1], 0)])
def test_the_reserve_queue_is_the_files_last_tasks(tmp_path, reserve, n):
    tasks = [_task(task_id=f"t{k:04d}", index=5 + k, bbox=[[0, 0, 5 + k], [36, 52, 6 + k]]) for k in range(3)]
    meta = {} if reserve is None else {"reserve_tasks": reserve}
    back = read_tasks(write_tasks(tmp_path / "tasks.json", tasks, dataset_root=sample_dataset(), meta=meta))
    # a count the file cannot hold, or cannot be read (a hand-edited file), never hides or invents tasks
    assert back.n_reserve == n and back.budget_tasks == tasks[:3 - n]


def _write_raw(tmp_path, tasks, **top):
    body = {"format": "medal-tasks/1", "dataset_root": str(sample_dataset()), "tasks": tasks, **top}
    (tmp_path / "tasks.json").write_text(json.dumps(body))
    return tmp_path / "tasks.json"


@pytest.mark.parametrize("change, message", [
    ({"image": "../../../etc/passwd"}, r"task t0000 \(hippocampus_004\): image: path '../../../etc/passwd' escapes its root"),
    ({"image": "/etc/passwd"}, r"image: path '/etc/passwd' escapes its root"),
    ({"kind": "supervoxel", "supervoxel": 3, "mask": "../outside.nii.gz"}, r"mask: path '../outside.nii.gz' escapes"),
    ({"status": "finished"}, r"task t0000 \(hippocampus_004\): status 'finished' is not one of \['todo', 'done', 'skipped'\]"),
    ({"axis": 3}, r"task t0000 \(hippocampus_004\): axis must be 0, 1 or 2"),
    ({"bbox": [[0, 0], [1, 1]]}, r"task t0000 \(hippocampus_004\): bbox must be"),
    ({"index": 40}, r"task t0000 \(hippocampus_004\): slice index 40 lies outside its bbox"),
    ({"score": "high"}, r"task t0000 \(hippocampus_004\): field 'score' should be a number"),
    ({"kind": "supervoxel", "supervoxel": 0}, r"a supervoxel task needs supervoxel >= 1 and a mask path"),
    ({"colour": "red"}, r"task t0000 \(hippocampus_004\): unknown field\(s\) \['colour'\]"),
])
def test_malformed_task_errors_name_the_task(tmp_path, change, message):
    d = {**_task().__dict__, **change}
    with pytest.raises(TaskError, match=message):
        read_tasks(_write_raw(tmp_path, [d]))


def test_malformed_files(tmp_path):
    (tmp_path / "tasks.json").write_text("{oops")
    with pytest.raises(TaskError, match=r"tasks\.json: not valid JSON"):
        read_tasks(tmp_path / "tasks.json")
    with pytest.raises(TaskError, match="expected format 'medal-tasks/1', got 'v0'"):
        read_tasks(_write_raw(tmp_path, [], format="v0"))
    d = _task().__dict__
    with pytest.raises(TaskError, match=r"duplicate task ids \['t0000'\]"):
        read_tasks(_write_raw(tmp_path, [d, d]))
    missing = {k: v for k, v in d.items() if k != "case_id"}
    with pytest.raises(TaskError, match=r"missing field\(s\) \['case_id'\]"):
        read_tasks(_write_raw(tmp_path, [missing]))
    with pytest.raises(TaskError, match="dataset_root '/nowhere' is not a folder"):
        read_tasks(_write_raw(tmp_path, [d], dataset_root="/nowhere"))
    with pytest.raises(TaskError, match="file not found"):
        read_tasks(tmp_path / "none.json")
