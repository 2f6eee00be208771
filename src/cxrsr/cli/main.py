"""The ``cxrsr`` command: argument parsing and dispatch to one module per subcommand."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import bench, convert, dicom_node, evaluate, export, serve, train, upscale

EPILOG = """\
examples:
  cxrsr upscale chest.png -o out/                       one file -> out/chest_x4.png
  cxrsr upscale scans/ -o out/ --recursive              every image below scans/, sub-folders mirrored
  cxrsr upscale "data/*.dcm" -o out/ --format tiff      a quoted glob; DICOM -> 16-bit TIFF
  cxrsr upscale big.tif -o out/ --tile 256              tiles of 256x256 input pixels for large images
  cxrsr upscale x.png -o out/ --weights my.safetensors --device cuda --precision fp16
  cxrsr convert swift_srgan_4x.pth.tar swift_srgan_4x.safetensors
  cxrsr eval nih/test --weights my.safetensors --json scores.json
  cxrsr serve --port 8000                               browser viewer and HTTP API on 127.0.0.1:8000
  cxrsr dicom-node --config node.toml                   DICOM node: receive, upscale, forward to a PACS
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrsr",
        description="4x super-resolution of chest X-rays with Swift-SRGAN.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cxrsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (upscale, evaluate, train, export, bench, convert, serve, dicom_node):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # File names are bytes: one that is not valid UTF-8 is printed with backslash escapes, never a crash.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if getattr(args, "debug", False) else logging.WARNING,
                        format="cxrsr: %(levelname)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
