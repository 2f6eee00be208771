"""The worker: takes pending instances in arrival order, upscales each with the same code path as
``cxrsr upscale`` (:func:`cxrsr.inference.files.upscale_file`, which writes the derived instance with
:mod:`cxrsr.io.dicom`), and delivers it to every destination.

A destination that fails is tried again after a delay that doubles per attempt (``retry_base_s`` up to
``retry_max_s``); destinations that already took the instance are not sent it again. After
``max_attempts`` the instance moves to failed/ with the reason (``cxrsr dicom-node requeue`` brings it
back). Derived files waiting for a destination are kept within half the spool's disk budget. An instance
that cannot be upscaled at all (it was checked on arrival, so this is rare) goes to
failed/ at once. Stopping (SIGTERM) lets the instance in hand finish; the rest stays in the spool.
"""

from __future__ import annotations

import logging
import threading
import time

from ..inference.files import upscale_file
from ..io import InputFileError
from .destinations import DeliveryError
from .spool import Item, Spool, hashed

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, spool: Spool, upscaler, destinations: list, max_attempts: int = 10,
                 retry_base_s: float = 5.0, retry_max_s: float = 300.0) -> None:
        self.spool = spool
        self.upscaler = upscaler
        self.destinations = destinations
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.counts = {"done": 0, "retried": 0, "failed": 0}

    def notify(self) -> None:
        """A new instance is pending."""
        self.wake.set()

    def run(self) -> None:
        while not self.stop.is_set():
            item, wait = self.next_due()
            if item is None:
                self.wake.wait(timeout=min(wait, 1.0))
                self.wake.clear()
                continue
            self.process(item)

    def next_due(self) -> tuple[Item | None, float]:
        """The oldest pending instance whose next attempt is due, or None and how long until one is."""
        now = time.time()
        soonest = 60.0
        for item in self.spool.pending():
            if self.spool.is_done(item):  # delivered just before a crash: only the clean-up is left
                self.spool.finish(item, {"recovered": True})
                continue
            due = float(self.spool.state(item).get("next_attempt", 0))
            if due <= now:
                return item, 0.0
            soonest = min(soonest, due - now)
        return None, soonest

    def process(self, item: Item) -> str:
        """Upscale (unless the derived file is already there) and deliver; returns done, retry or failed."""
        state = self.spool.state(item)
        out = self.spool.out_path(item)
        started = time.perf_counter()
        if not out.exists():
            try:
                upscale_file(self.upscaler, item.path, out, fmt="dcm")
            except InputFileError as exc:
                return self._give_up(item, state, f"cannot upscale: {exc.reason}")
            except Exception as exc:  # memory, a broken model file: worth another try later
                return self._retry(item, state, f"upscaling failed ({type(exc).__name__})")
        upscale_s = time.perf_counter() - started
        delivered = list(state.get("delivered", []))
        errors = []
        for dest in self.destinations:
            if dest.name in delivered:
                continue
            try:
                dest.send(out)
                delivered.append(dest.name)
            except DeliveryError as exc:
                errors.append(str(exc))
            except Exception as exc:
                errors.append(f"{dest.name}: {type(exc).__name__}")
        state["delivered"] = delivered
        if errors:
            return self._retry(item, state, "; ".join(errors))
        import pydicom

        derived = pydicom.dcmread(out, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SeriesInstanceUID"])
        self.spool.finish(item, {
            "instance": hashed(derived.SOPInstanceUID),
            "series": hashed(derived.SeriesInstanceUID),
            "destinations": delivered,
            "attempts": int(state.get("attempts", 0)) + 1,
            "upscale_s": round(upscale_s, 3),
        })
        self.counts["done"] += 1
        log.info("%s done: derived %s delivered to %d destination(s) in %.1f s after arrival",
                 item.name, hashed(derived.SOPInstanceUID), len(delivered), time.time() - item.received)
        return "done"

    def _retry(self, item: Item, state: dict, reason: str) -> str:
        attempts = int(state.get("attempts", 0)) + 1
        state.update(attempts=attempts, last_error=reason, last_attempt=time.time())
        if attempts >= self.max_attempts:
            return self._give_up(item, state, reason)
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** (attempts - 1))
        state["next_attempt"] = time.time() + delay
        self.spool.save_state(item, state)
        # A derived file is 16x its source: while destinations are down, keep them only within half the
        # spool's budget, so that waiting never fills the disk; a removed one is remade on the next attempt.
        if self.spool.usage() > self.spool.budget_bytes // 2:
            self.spool.out_path(item).unlink(missing_ok=True)
        self.counts["retried"] += 1
        log.warning("%s: attempt %d of %d failed (%s); next in %.1f s", item.name, attempts, self.max_attempts,
                    reason, delay)
        return "retry"

    def _give_up(self, item: Item, state: dict, reason: str) -> str:
        state.update(reason=reason, failed_at=time.time())
        self.spool.fail(item, state)
        self.counts["failed"] += 1
        log.error("%s moved to failed/ after %d attempt(s): %s", item.name, int(state.get("attempts", 1)),
                  reason.split(" (")[0])
        return "failed"
