"""``cxrsr serve``: the HTTP API and the browser viewer (needs ``pip install "cxrsr[serve]"``)."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP API and browser viewer (compare bicubic and cxrsr)",
        description="Serve the upscaler over HTTP: the viewer at http://HOST:PORT/, the API under /api "
                    "(OpenAPI docs at /docs). Binds to localhost unless --host says otherwise.",
        epilog="example:\n  cxrsr serve --port 8000 --weights cxr-fidelity\n  open http://127.0.0.1:8000/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--weights", default=None, metavar="NAME|PATH", help="default model (default: cxr-fidelity)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body (default: 64)")
    p.add_argument("--max-pixels", type=int, default=2048 * 2048,
                   help="largest input in pixels, checked before decoding (default: 4194304 = 2048x2048)")
    p.add_argument("--queue", type=int, default=4, help="requests that may wait for the model (default: 4)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve import ServeConfig, create_app
    except ImportError as exc:
        print(f"cxrsr: error: cxrsr serve needs FastAPI and uvicorn ({exc.name} is missing): "
              'pip install "cxrsr[serve]"', file=sys.stderr)
        return 1
    from ..weights import WeightsError

    config = ServeConfig(model=args.weights, device=args.device, max_upload_mb=args.max_upload_mb,
                         max_pixels=args.max_pixels, queue_size=args.queue)
    try:
        app = create_app(config)
    except WeightsError as exc:
        print(f"cxrsr: error: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("cxrsr.serve").setLevel(logging.INFO)
    print(f"cxrsr viewer at http://{args.host}:{args.port}/ (API docs at /docs); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
