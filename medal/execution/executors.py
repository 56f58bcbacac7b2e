"""Executors for per-case work: local (embedded default) and Ray.

Both take a work spec (:class:`~medal.execution.work.ScoreSpec` for scoring,
:class:`~medal.execution.regions.RegionSpec` for region tables: anything picklable with
``make_worker()`` returning ``worker(case_id, image_path, image=None) -> record``), build one worker
per process or actor (so a model is loaded once per worker, not per case), and yield one result
record per case as cases finish.

``LocalExecutor(workers=1)`` scores in this process and reads the next volume in a background
thread while the current one is scored (I/O overlapped with compute). With ``workers > 1`` it
starts that many spawned processes, each with its own model, one per GPU when there are GPUs
(``cuda:i``), else on the CPU with ``threads`` torch threads each.

``RayExecutor`` (``pip install medal[ray]``) joins a cluster (``address``) or starts a local one,
and keeps the model resident in actors (one per GPU, or per ``num_cpus`` CPUs).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from dataclasses import replace

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "get_executor"]

_WORKER = None


def _init_worker(spec) -> None:
    global _WORKER
    _WORKER = spec.make_worker()


def _run_in_worker(case_id: str, image_path: str) -> dict:
    return _WORKER(case_id, image_path)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 1, threads: int = 0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.threads = workers, threads

    def _threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def run(self, spec, cases):
        """Yield result records for ``cases`` (sequence of ``(case_id, image_path)``)."""
        cases = list(cases)
        gpus = _gpu_count()
        if self.workers == 1:
            from medal.data import load_volume

            dev = "cuda:0" if gpus and spec.device == "auto" else ("cpu" if spec.device == "auto" else spec.device)
            scorer = replace(spec, threads=self._threads(), device=dev).make_worker()

            def read(path):
                try:
                    return load_volume(path)
                except Exception:  # noqa: BLE001 - the scorer reloads and reports the error itself
                    return None

            with cf.ThreadPoolExecutor(max_workers=1) as io:  # prefetch the next volume
                nxt = io.submit(read, cases[0][1]) if cases else None
                for i, (cid, path) in enumerate(cases):
                    image = nxt.result()
                    nxt = io.submit(read, cases[i + 1][1]) if i + 1 < len(cases) else None
                    yield scorer(cid, path, image=image)
            return
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or OpenMP state
        pools = []
        for w in range(self.workers):
            dev = f"cuda:{w % gpus}" if gpus and spec.device in ("auto", "cuda") else "cpu"
            pools.append(cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker,
                                                initargs=(replace(spec, threads=self._threads(), device=dev),)))
        try:
            futures = {pools[i % len(pools)].submit(_run_in_worker, cid, path): cid
                       for i, (cid, path) in enumerate(cases)}
            for fut in cf.as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker process died (e.g. killed for memory)
                    yield {"case_id": futures[fut], "status": "failed", "error": f"worker died: {exc!r}",
                           "seconds": 0.0, "voxels": 0}
        finally:
            for p in pools:
                p.shutdown(cancel_futures=True)


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int | None = None, *, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_worker: int = 1, threads: int = 0):
        self.workers, self.address, self.num_cpus = workers, address, num_cpus
        self.cpus_per_worker, self.threads = cpus_per_worker, threads

    def run(self, spec, cases):
        try:
            import ray
            from ray.util import ActorPool
        except ImportError as exc:
            raise RuntimeError("the Ray executor needs Ray: pip install 'medal[ray]'") from exc
        started = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
                started = True
        try:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = self.workers or (gpus if gpus else max(1, cpus // self.cpus_per_worker))
            remote = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=1 if gpus else 0)(_RayWorker)
            device = "cuda" if gpus else "cpu"
            threads = self.threads or self.cpus_per_worker
            actors = [remote.remote(replace(spec, threads=threads, device=device)) for _ in range(n)]
            pool = ActorPool(actors)
            for res in pool.map_unordered(lambda a, c: a.score.remote(*c), list(cases)):
                yield res
        finally:
            if started:
                ray.shutdown()


class _RayWorker:
    def __init__(self, spec):
        self.worker = spec.make_worker()

    def score(self, case_id: str, image_path: str) -> dict:
        return self.worker(case_id, image_path)


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(name: str, **kwargs):
    try:
        cls = EXECUTORS[name]
    except KeyError:
        raise KeyError(f"unknown executor {name!r}; valid: {sorted(EXECUTORS)}") from None
    return cls(**kwargs)
