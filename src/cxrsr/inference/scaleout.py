"""Batch upscaling on Ray Data: the same jobs as ``cxrsr upscale``, run by a pool of actors on one machine or a
cluster (``pip install "cxrsr[ray]"``).

The driver lists the inputs once and plans every output name (``plan_jobs``: the same names, suffix,
skip-existing and overwrite rules as the single-process command). Only the jobs to run go to Ray, one file per
task; each actor loads one Upscaler when it starts and reads, upscales and writes its files itself (outputs are
written under a temporary name and renamed when complete, so a killed worker never leaves a partial file under
a final name). Ray restarts an actor that dies and retries its task, a bounded number of times (``RESTARTS``):
an actor that dies every time it starts (out of memory, a broken install on one node) ends the run with
``ActorsKeptDying`` instead of a restart loop that never ends. The driver writes one manifest row per input as
results arrive. Input and output folders must be reachable under the same paths on every node.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..io import InputFileError

#: Test-only fault injection: when set to a path, the first actor that manages to create that file exits
#: at once (as if its process were killed) before touching its file; Ray must restart it and retry. Set to
#: ``ALWAYS_FAIL``, every actor exits on its first file.
FAULT_ENV = "CXRSR_TEST_ACTOR_EXIT_MARKER"
ALWAYS_FAIL = "always"

#: How often Ray may restart each actor and retry a file whose actor died (Ray Data's default is forever).
RESTARTS = 3


class ActorsKeptDying(RuntimeError):
    """The upscaler actors died more often than ``RESTARTS`` allows."""


@dataclass(frozen=True)
class RayOptions:
    address: str = "local"  # "local": start a Ray for this run; "auto" or host:port: join a running cluster
    actors: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_actor: float = 2.0  # torch threads per actor follow it (Ray sets OMP_NUM_THREADS)
    gpus_per_actor: float = 0.0


class UpscaleActor:
    """One per Ray actor: loads the Upscaler once, then upscales one file per call."""

    def __init__(self, weights, device, precision, tile, backend, consistency, fmt, window, strip_metadata) -> None:
        from .upscaler import Upscaler

        self.upscaler = Upscaler.from_pretrained(weights, device=device, precision=precision, tile=tile,
                                                 backend=backend, consistency=consistency)
        self.options = dict(fmt=fmt, window=window, strip_metadata=strip_metadata)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        from .files import upscale_file

        _maybe_fail_for_test()
        rows: dict[str, list] = {k: [] for k in ("input", "output", "status", "error", "seconds", "worker")}
        for src, dst in zip(batch["input"], batch["output"]):
            start = time.perf_counter()
            try:
                upscale_file(self.upscaler, src, dst, **self.options)
                status, error = "done", ""
            except InputFileError as exc:
                status, error = "failed", str(exc)
            except Exception as exc:  # one broken file must not stop the batch
                status, error = "failed", f"{src}: {type(exc).__name__}: {exc}"
            for key, value in (("input", str(src)), ("output", str(dst)), ("status", status), ("error", error),
                               ("seconds", round(time.perf_counter() - start, 3)), ("worker", self.worker)):
                rows[key].append(value)
        return rows


def _maybe_fail_for_test() -> None:
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    if marker == ALWAYS_FAIL:
        os._exit(17)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode())
    os.close(fd)
    os._exit(17)


def run_on_ray(jobs: list[tuple[str, str]], actor_args: dict, options: RayOptions,
               on_row: Callable[[dict], None]) -> None:
    """Run ``(input, output)`` jobs on Ray; ``on_row`` receives each result row as it arrives."""
    import ray

    if not jobs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        # an explicit "local": with None, Ray would join whatever cluster RAY_ADDRESS or the last `ray start`
        # on this machine names (possibly a dead one, or one whose workers run another install)
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env=None)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command shows its own progress; Ray's would interleave with it
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        resources = ray.cluster_resources()
        if options.gpus_per_actor > 0:
            fit = int(resources.get("GPU", 0) // options.gpus_per_actor)
        else:
            fit = int(resources.get("CPU", 1) // max(options.cpus_per_actor, 1e-9))
        actors = max(1, min(options.actors or fit or 1, len(jobs)))
        cpus = min(options.cpus_per_actor, resources.get("CPU", 1))
        dataset = ray.data.from_items([{"input": src, "output": dst} for src, dst in jobs],
                                      override_num_blocks=len(jobs))
        with warnings.catch_warnings():  # the restart bound has no named parameter yet (see pyproject.toml)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            results = dataset.map_batches(UpscaleActor, fn_constructor_kwargs=actor_args, batch_size=1,
                                          concurrency=actors, num_cpus=cpus,
                                          num_gpus=options.gpus_per_actor or None,
                                          max_restarts=RESTARTS, max_task_retries=RESTARTS)
        try:
            for row in results.iter_rows():
                on_row(dict(row))
        except Exception as exc:  # Ray Data may wrap the actor's death in its own errors
            if not _actor_died(exc):
                raise
            raise ActorsKeptDying(f"the upscaler actors died more than {RESTARTS} times; the files not in the "
                                  f"manifest were not upscaled (see the Ray logs of the node that ran them)") from exc
    finally:
        if started_here:
            ray.shutdown()


def _actor_died(exc: BaseException) -> bool:
    """Whether an error Ray Data raised comes from an actor that died, anywhere in its chain of causes."""
    import ray

    while exc is not None:
        if isinstance(exc, (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError,
                            ray.exceptions.WorkerCrashedError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Manifest:
    """JSON Lines, one row per input, flushed as each result arrives (a fresh file per run)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w")
        self.counts = {"done": 0, "skipped": 0, "failed": 0}

    def write(self, row: dict) -> None:
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
