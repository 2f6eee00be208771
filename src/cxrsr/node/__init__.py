"""cxrsr as a node on a DICOM network: receive (C-STORE SCP), spool durably, upscale, forward.

    sender --C-STORE--> scp.py --fsync--> spool.py (pending/) --> worker.py (Upscaler, io/dicom.py)
        --> destinations.py (C-STORE SCU, STOW-RS, folder)

Needs ``pip install "cxrsr[dicom-node]"`` (pynetdicom). Logs carry no patient data: UIDs are hashed, the
rest is counts, statuses, AE titles and addresses.
"""

from __future__ import annotations

import logging
import signal
import threading

from .config import ConfigError, Destination, NodeConfig, load_config, parse_destination
from .spool import Spool

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "Destination", "Node", "NodeConfig", "Spool", "load_config", "parse_destination"]


class Node:
    """One running node. ``start()`` loads the model and binds the port; ``run()`` works the queue until
    ``stop()`` (which SIGTERM and SIGINT call once ``install_signal_handlers()`` ran)."""

    def __init__(self, config: NodeConfig, upscaler=None) -> None:
        self.config = config.check()
        self.upscaler = upscaler
        self.spool = Spool(config.spool, config.spool_budget_bytes, int(config.min_free_mb * 2**20))
        self.server = None
        self.worker = None

    def start(self) -> tuple[str, int]:
        from ..inference import Upscaler
        from .destinations import make_destination
        from .scp import StoreHandler, start_server
        from .worker import Worker

        self.spool.open()
        if self.upscaler is None:
            self.upscaler = Upscaler.from_pretrained(self.config.weights, device=self.config.device,
                                                     tile=self.config.tile)
        destinations = [make_destination(d, self.config.ae_title, self.config.timeout_s) for d in self.config.forward]
        self.worker = Worker(self.spool, self.upscaler, destinations, self.config.max_attempts,
                             self.config.retry_base_s, self.config.retry_max_s)
        handler = StoreHandler(self.config, self.spool, on_accepted=self.worker.notify)
        self.server = start_server(self.config, handler)
        status = self.spool.status()
        log.info("spool %s: %d pending, %d failed, %d done", self.config.spool, status["pending"], status["failed"],
                 status["done"])
        return tuple(self.server.server_address[:2])

    def run(self) -> None:
        try:
            self.worker.run()
        finally:
            self.close()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop.set()
            self.worker.wake.set()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
            log.info("stopped; the spool keeps %d pending", self.spool.status()["pending"])

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT: finish the instance in hand, keep the spool, exit (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum, frame) -> None:
            log.info("signal %d: finishing the current instance, then stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
