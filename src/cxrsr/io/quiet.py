"""Keeping decoding libraries' own log records about a damaged file off the console while cxrsr reads it.

The answer to a damaged file is one InputFileError line (or the image, with cxrsr's own warning naming the
file); tifffile and pydicom would add lines of their own. A filter on their loggers drops those records
while the current thread is inside :func:`quiet`. Other threads (cxrsr serve) and other times are untouched,
and no logger's level is changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


class _WhileReading(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_state, "reading", False)


for _name in ("tifffile", "pydicom"):  # each logs through this one logger
    logging.getLogger(_name).addFilter(_WhileReading())


@contextmanager
def quiet() -> Iterator[None]:
    previous = getattr(_state, "reading", False)
    _state.reading = True
    try:
        yield
    finally:
        _state.reading = previous
