"""``cxrsr dicom-node``: receive, upscale and forward DICOM (needs ``pip install "cxrsr[dicom-node]"``);
``status`` and ``requeue`` work on a spool folder."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from .upscale import _tile

EPILOG = """\
examples:
  cxrsr dicom-node --config node.toml
  cxrsr dicom-node --ae-title CXRSR --port 11112 --spool /var/spool/cxrsr --forward ORTHANC@127.0.0.1:4242
  cxrsr dicom-node --host 0.0.0.0 --allow ORTHANC --forward http://pacs:8042/dicom-web/studies --spool spool/
  cxrsr dicom-node status --spool /var/spool/cxrsr
  cxrsr dicom-node requeue --spool /var/spool/cxrsr     failed instances back into the queue
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dicom-node",
        help="DICOM node: receive (C-STORE), upscale, forward to a PACS",
        description="Run a DICOM Storage SCP that upscales every received CR, DX, secondary capture or CT image "
                    "and forwards the derived series (C-STORE, STOW-RS or a folder). Received instances are "
                    "spooled to disk before they are acknowledged, and survive restarts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=["run", "status", "requeue"], default="run",
                   help="run the node (default), show the spool's counts, or re-queue failed instances")
    p.add_argument("--config", type=Path, default=None, metavar="node.toml",
                   help="TOML file with the settings below (flags given here win)")
    p.add_argument("--ae-title", default=None, help="the node's AE title (default: CXRSR)")
    p.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="DICOM port (default: 11112)")
    p.add_argument("--spool", type=Path, default=None, metavar="DIR", help="spool folder (default: cxrsr-spool)")
    p.add_argument("--weights", default=None, metavar="NAME|PATH", help="weights (default: the package default)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--tile", type=_tile, default=None, metavar="N|auto", help="tile size (default: auto)")
    p.add_argument("--forward", action="append", default=[], metavar="AET@HOST:PORT|URL|folder:PATH",
                   help="destination for derived instances; repeatable")
    p.add_argument("--allow", action="append", default=[], metavar="AET",
                   help="calling AE title to accept; repeatable. Without any, every AE is accepted and the "
                        "node must listen on a loopback address")
    p.add_argument("--allow-host", dest="allow_hosts", action="append", default=[], metavar="IP|NET",
                   help="source address or network to accept (e.g. 10.1.2.0/24); repeatable (default: any)")
    p.add_argument("--max-associations", type=int, default=None, help="associations at once (default: 4)")
    p.add_argument("--max-pdu", type=int, default=None, help="largest PDU received, bytes (default: 65536)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest input, rows x columns, checked from the header (default: 16777216)")
    p.add_argument("--spool-budget-mb", type=float, default=None,
                   help="spool size past which stores are refused with 0xA700 (default: 4096)")
    p.add_argument("--max-attempts", type=int, default=None, help="delivery attempts before failed/ (default: 10)")
    p.add_argument("--retry-base-s", type=float, default=None, help="first retry delay, doubled each time (default: 5)")
    p.add_argument("--retry-max-s", type=float, default=None, help="longest retry delay (default: 300)")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.set_defaults(run=run)


_SETTINGS = ("ae_title", "host", "port", "spool", "weights", "device", "tile", "forward", "allow", "allow_hosts",
             "max_associations", "max_pdu", "max_pixels", "spool_budget_mb", "max_attempts", "retry_base_s",
             "retry_max_s")


def run(args: argparse.Namespace) -> int:
    from ..node.config import ConfigError, load_config, spool_from_config

    overrides = {key: getattr(args, key) for key in _SETTINGS}
    if args.action != "run":
        try:
            spool = args.spool or spool_from_config(args.config)
        except ConfigError as exc:
            print(f"cxrsr: error: {exc}", file=sys.stderr)
            return 2
        return spool_command(args.action, spool, args.json)
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        print('cxrsr: error: cxrsr dicom-node needs pynetdicom: pip install "cxrsr[dicom-node]"', file=sys.stderr)
        return 1
    from ..node import Node
    from ..weights import WeightsError

    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("cxrsr.node").setLevel(logging.DEBUG if args.debug else logging.INFO)
    node = Node(config)
    try:
        host, port = node.start()
    except (WeightsError, ValueError, RuntimeError) as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cxrsr: error: cannot listen on {config.host}:{config.port} or use the spool "
              f"({exc.strerror or exc})", file=sys.stderr)
        return 1
    node.install_signal_handlers()
    print(f"cxrsr dicom-node {config.ae_title} listening on {host}:{port}, spool {config.spool}; "
          f"forwarding to {', '.join(d.spec for d in config.forward)}", flush=True)
    node.run()
    return 0


def spool_command(action: str, spool_dir: Path, as_json: bool) -> int:
    from ..node.spool import Spool

    if not spool_dir.is_dir():
        print(f"cxrsr: error: {spool_dir}: no such spool folder", file=sys.stderr)
        return 1
    spool = Spool(spool_dir)
    if action == "requeue":
        for state in ("pending", "failed"):
            (spool_dir / state).mkdir(exist_ok=True)
        print(f"{spool.requeue()} failed instance(s) re-queued in {spool_dir}")
        return 0
    status = spool.status()
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    oldest = status["oldest_pending"]
    when = "-" if oldest is None else (f"{dt.datetime.fromtimestamp(oldest).isoformat(timespec='seconds')} "
                                       f"({status['oldest_pending_age_s']:.0f} s ago)")
    print(f"received {status['received']}  done {status['done']}  pending {status['pending']}  "
          f"failed {status['failed']}  refused {status['refused']}\noldest pending: {when}\n"
          f"spool: {status['spool_bytes'] / 2**20:.1f} MiB in {spool_dir}")
    return 0
