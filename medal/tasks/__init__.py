"""Annotation tasks written for the expert (``tasks.json``)."""

from .tasks import FORMAT, STATUSES, Task, TaskError, TaskList, read_tasks, task_region, validate_tasks, write_tasks

__all__ = ["FORMAT", "STATUSES", "Task", "TaskError", "TaskList", "read_tasks", "task_region", "validate_tasks", "write_tasks"]
