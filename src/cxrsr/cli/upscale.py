"""``cxrsr upscale INPUT... -o OUTDIR``: upscale files, folders and globs, continuing past bad files."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..inference import Upscaler
from ..inference.consistency import DEFAULT_STEPS
from ..inference.files import collect_inputs, plan_jobs
from ..inference.pipeline import upscale_jobs
from ..io import OUTPUT_FORMATS, InputFileError
from ..io.dicom import parse_window
from ..weights import WeightsError


def _int_at_least(value: str, minimum: int, expected: str, too_small: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(too_small)
    return n


def _tile(value: str) -> int | str:
    if value == "auto":
        return value
    return _int_at_least(value, 16, "'auto' or an integer", "tile must be at least 16 pixels")


def consistency_steps(value: str) -> int:
    return _int_at_least(value, 0, "a whole number of steps", "consistency steps must be 0 or more")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="upscale images 4x",
        description="Upscale chest X-rays (PNG, JPEG, TIFF 8/16-bit, DICOM) and write PNG, TIFF, JPEG or DICOM. "
                    "Inputs are never modified; existing outputs are skipped unless --overwrite.",
        epilog="examples:\n  cxrsr upscale chest.png -o out/\n  cxrsr upscale scans/ \"more/*.dcm\" -o out/ --tile 256",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", dest="outdir", type=Path, required=True, metavar="OUTDIR",
                   help="folder for the outputs (created if missing)")
    p.add_argument("--weights", default=None, metavar="NAME|PATH",
                   help="shipped weights name or a .safetensors / .pth file (default: the package default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="floating-point precision of the network (default: auto)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "triton"],
                   help="run the network with PyTorch (default), ONNX Runtime, or fused Triton kernels (CUDA)")
    p.add_argument("--tile", type=_tile, default="auto", metavar="N|auto",
                   help="tile size in input pixels for large images (default: auto, from free memory)")
    p.add_argument("--consistency", type=consistency_steps, default=DEFAULT_STEPS, metavar="N",
                   help="back-projection steps that make the output, downscaled by bicubic, give back the input "
                        f"(default: {DEFAULT_STEPS}; 0: the network's output as is)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=None,
                   help="output format (default: DICOM for DICOM input, TIFF for TIFF, else PNG; "
                        "16-bit input gives 16-bit PNG/TIFF)")
    p.add_argument("--window", default=None, metavar="full|lung|mediastinum|C,W",
                   help="DICOM intensity window the network sees (default: full, the image's own range); "
                        "values outside it are kept in DICOM output. For CT: lung, mediastinum or centre,width in HU")
    p.add_argument("--strip-metadata", action="store_true",
                   help="write PNG/TIFF/JPEG without any metadata (by default they name cxrsr and the weights)")
    p.add_argument("--suffix", default="_x4", help="added to each output file's stem (default: _x4)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input file)")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    p.add_argument("--no-overlap", action="store_true",
                   help="read, upscale and write one file after another (by default the next file is read and "
                        "the previous one written while the network runs)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    ray = p.add_argument_group("scale-out on Ray (pip install \"cxrsr[ray]\")")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run on Ray Data: a local Ray without ADDRESS, or join a cluster ('auto' or host:port)")
    ray.add_argument("--actors", type=int, default=None, help="upscaler actors (default: as many as fit)")
    ray.add_argument("--cpus-per-actor", type=float, default=2.0, help="CPUs per actor (default: 2)")
    ray.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (default: 0)")
    ray.add_argument("--manifest", type=Path, default=None,
                     help="JSON Lines manifest, one row per input (default: OUTDIR/cxrsr-manifest.jsonl)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        parse_window(args.window)
    except ValueError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 2
    inputs, problems = collect_inputs(args.inputs, recursive=args.recursive)
    for message in problems:
        print(f"cxrsr: error: {message}", file=sys.stderr)
    if not inputs:
        print("cxrsr: error: no input files", file=sys.stderr)
        return 1
    if args.ray is not None:
        return run_ray(args, inputs, len(problems))
    try:
        upscaler = Upscaler.from_pretrained(args.weights, device=args.device, precision=args.precision,
                                            tile=args.tile, backend=args.backend, consistency=args.consistency)
    except (WeightsError, ValueError, RuntimeError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    if not output_folder_ready(args.outdir):
        return 1
    jobs = plan_jobs(inputs, args.outdir, fmt=args.format, suffix=args.suffix, overwrite=args.overwrite)
    done, skipped, failed = 0, 0, len(problems)
    runnable = [job for job in jobs if job.action == "run"]
    results = upscale_jobs(upscaler, runnable, fmt=args.format, window=args.window,
                           strip_metadata=args.strip_metadata, overlap=not args.no_overlap)
    with logging_redirect_tqdm(), tqdm(total=len(jobs), unit="file", desc="upscaling", disable=None) as bar:
        for job in jobs:  # in the planned order; the runnable ones come back from the pipeline in that order
            bar.set_postfix_str(job.src.path.name)
            if job.action == "fail":
                tqdm.write(f"cxrsr: error: {job.problem}", file=sys.stderr)
                failed += 1
            elif job.action == "skip":
                tqdm.write(f"cxrsr: skipped {job.problem or f'{job.src.path}: {job.dst} exists (use --overwrite)'}",
                           file=sys.stderr)
                skipped += 1
            else:
                result = next(results)
                if result.ok:
                    done += 1
                else:
                    failed += 1
                    report_failure(result.job, result.error, args.debug)
            bar.update()
    logging.getLogger(__name__).debug("weights %s on %s (%s)", upscaler.weights_name, upscaler.device, upscaler.dtype)
    print(f"{done} upscaled, {skipped} skipped, {failed} failed -> {args.outdir}")
    return 1 if failed else 0


def report_failure(job, exc: BaseException, debug: bool) -> None:
    """One line naming the file and the problem (a traceback with --debug)."""
    if isinstance(exc, InputFileError):
        tqdm.write(f"cxrsr: error: {exc}", file=sys.stderr)
    elif isinstance(exc, OSError):  # the output side: disk full, read-only, permissions
        tqdm.write(f"cxrsr: error: {job.src.path}: cannot write {job.dst} ({exc.strerror or exc})", file=sys.stderr)
    else:  # one broken file must not stop the batch
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        tqdm.write(f"cxrsr: error: {job.src.path}: {type(exc).__name__}: {first_line}", file=sys.stderr)
    if debug:
        traceback.print_exception(exc)


def output_folder_ready(outdir: Path) -> bool:
    """Create the output folder if needed and check that files can be made in it; print why not."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cxrsr: error: {outdir}: cannot create the output folder ({exc.strerror or exc})", file=sys.stderr)
        return False
    if not os.access(outdir, os.W_OK | os.X_OK):
        print(f"cxrsr: error: {outdir}: output folder is not writable", file=sys.stderr)
        return False
    return True


def run_ray(args: argparse.Namespace, inputs, problems: int) -> int:
    """The same jobs on Ray Data (inference/scaleout.py); a manifest row per input; exit 1 if any failed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print('cxrsr: error: --ray needs Ray: pip install "cxrsr[ray]"', file=sys.stderr)
        return 1
    from ..inference.scaleout import ActorsKeptDying, Manifest, RayOptions, run_on_ray
    from ..weights import resolve_weights

    try:
        weights = str(resolve_weights(args.weights))  # checked here, loaded by each actor
    except WeightsError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    if not output_folder_ready(args.outdir):
        return 1
    jobs = plan_jobs(inputs, args.outdir, fmt=args.format, suffix=args.suffix, overwrite=args.overwrite)
    manifest = Manifest(args.manifest or args.outdir / "cxrsr-manifest.jsonl")
    for job in jobs:
        if job.action == "fail":
            tqdm.write(f"cxrsr: error: {job.problem}", file=sys.stderr)
            manifest.write({"input": str(job.src.path), "output": "", "status": "failed", "error": job.problem,
                            "seconds": 0.0, "worker": "driver"})
        elif job.action == "skip":
            manifest.write({"input": str(job.src.path), "output": str(job.dst or ""), "status": "skipped",
                            "error": job.problem or "output exists (use --overwrite)", "seconds": 0.0,
                            "worker": "driver"})
    run = [(str(j.src.path), str(j.dst)) for j in jobs if j.action == "run"]
    actor_args = dict(weights=weights, device=args.device, precision=args.precision, tile=args.tile,
                      backend=args.backend, consistency=args.consistency, fmt=args.format, window=args.window,
                      strip_metadata=args.strip_metadata)
    options = RayOptions(address=args.ray, actors=args.actors,
                         cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.num_gpus)
    bar = tqdm(total=len(run), unit="file", desc="upscaling on Ray", disable=None)

    def arrived(row: dict) -> None:
        manifest.write(row)
        bar.update()
        if row["status"] == "failed":
            tqdm.write(f"cxrsr: error: {row['error']}", file=sys.stderr)

    start = time.perf_counter()
    try:
        run_on_ray(run, actor_args, options, arrived)
    except KeyboardInterrupt:
        print(f"cxrsr: interrupted; run the same command again to finish (manifest {manifest.path})", file=sys.stderr)
        return 130
    except ActorsKeptDying as exc:
        print(f"cxrsr: error: {exc}; run the same command again to finish (manifest {manifest.path})",
              file=sys.stderr)
        return 1
    finally:
        bar.close()
        manifest.close()
    c = manifest.counts
    failed = c["failed"] + problems
    print(f"{c['done']} upscaled, {c['skipped']} skipped, {failed} failed in {time.perf_counter() - start:.1f} s "
          f"on Ray -> {args.outdir} (manifest {manifest.path})")
    return 1 if failed else 0
