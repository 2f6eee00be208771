"""A folder of images at full speed: the next file is decoded and the previous result encoded on two threads
while the network runs on the current one.

Decoding (PNG inflate, DICOM and JPEG 2000 decoders) and encoding (PNG deflate, DICOM writing) release the
GIL for most of their time, so on a machine whose cores the network does not keep busy all the time (the
stitching of tiles, single-threaded stretches between layers) they run beside it instead of after it. At most
one image is read ahead and one result waits to be written, so memory grows by two images, not a queue.

Results come back in job order, one per job, with the same errors the one-file path raises
(:func:`~cxrsr.inference.files.upscale_file`): a bad input fails its own job and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .files import Job, encode_upscaled, output_format, read_input, upscale_file
from .upscaler import Upscaler


@dataclass
class JobResult:
    job: Job
    error: BaseException | None = None  # None: written to job.dst

    @property
    def ok(self) -> bool:
        return self.error is None


def upscale_jobs(upscaler: Upscaler, jobs: Iterable[Job], fmt: str | None = None, window: str | None = None,
                 strip_metadata: bool = False, tile: int | str | None = None,
                 overlap: bool = True) -> Iterator[JobResult]:
    """Read, upscale and write each job whose action is "run" (others are not passed here), yielding one
    :class:`JobResult` per job in order. ``overlap=False`` does the three steps one after another, as
    :func:`~cxrsr.inference.files.upscale_file` does (for measuring what the overlap gains)."""
    jobs = list(jobs)
    if not overlap:
        for job in jobs:
            yield _serial(upscaler, job, fmt, window, strip_metadata, tile)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="cxrsr-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="cxrsr-write") as writer:
        def read(job: Job) -> Future:
            return reader.submit(read_input, job.src.path, job.dst, window)

        pending_read = read(jobs[0]) if jobs else None
        pending_write: tuple[Job, Future] | None = None
        for i, job in enumerate(jobs):
            current, pending_read = pending_read, read(jobs[i + 1]) if i + 1 < len(jobs) else None
            result = None
            try:
                image = current.result()
                out_fmt = output_format(image, job.dst, fmt)
                sr = upscaler.upscale_array(image.array, tile=tile)
            except Exception as exc:  # noqa: BLE001 - reported for this job; the batch goes on
                result = JobResult(job, exc)
            if pending_write is not None:  # the previous result, written while this one was upscaled
                yield _finished(*pending_write)
                pending_write = None
            if result is not None:
                yield result
                continue
            pending_write = (job, writer.submit(encode_upscaled, upscaler, image, sr, job.dst, out_fmt,
                                                strip_metadata))
            del image, sr  # the writer holds them until the file is written
        if pending_write is not None:
            yield _finished(*pending_write)


def _finished(job: Job, write: Future) -> JobResult:
    try:
        write.result()
    except Exception as exc:  # noqa: BLE001
        return JobResult(job, exc)
    return JobResult(job)


def _serial(upscaler: Upscaler, job: Job, fmt, window, strip_metadata, tile) -> JobResult:
    try:
        upscale_file(upscaler, job.src.path, job.dst, fmt=fmt, tile=tile, window=window,
                     strip_metadata=strip_metadata)
    except Exception as exc:  # noqa: BLE001
        return JobResult(job, exc)
    return JobResult(job)
