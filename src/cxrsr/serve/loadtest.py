"""A bounded load test of a running ``cxrsr serve`` on this machine: N uploads, C at a time, good and bad mixed.

    python benchmarks/serve_load.py     # starts a server on 127.0.0.1, runs this, records the figures

Every good upload must come back as its 4x image or as 503 (queue full, with Retry-After); every bad one with
its 4xx; the server must answer /api/health at the end. Needs httpx (the test extra).
"""

from __future__ import annotations

import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Upload:
    name: str
    data: bytes
    good: bool
    size: tuple[int, int] | None = None  # input (width, height) of a good upload


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)  # answers that break the rules above
    alive: bool = False

    @property
    def rejects(self) -> int:
        return self.statuses.get(503, 0)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {"requests": self.requests, "seconds": round(self.seconds, 2),
                "p50_s": round(statistics.median(lat), 3) if lat else None,
                "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
                "statuses": dict(sorted(self.statuses.items())), "rejected_busy": self.rejects,
                "wrong": self.wrong, "alive": self.alive}


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def mixed_uploads(image: np.ndarray, n: int) -> list[Upload]:
    """n uploads, one in three bad (not an image; a truncated PNG), the rest the given grey image as PNG."""
    good = png_bytes(image)
    out = []
    for i in range(n):
        if i % 3 == 1:
            out.append(Upload(f"notes{i}.png", b"this is not an image\n" * 20, False))
        elif i % 3 == 2 and i % 2 == 0:
            out.append(Upload(f"cut{i}.png", good[: len(good) // 3], False))
        else:
            out.append(Upload(f"xray{i}.png", good, True, (image.shape[1], image.shape[0])))
    return out


def run_load(base_url: str, uploads: list[Upload], concurrency: int, timeout: float = 120.0) -> LoadResult:
    import httpx

    result = LoadResult(requests=len(uploads), seconds=0.0)

    def one(upload: Upload):
        start = time.perf_counter()
        with httpx.Client(timeout=timeout) as client:
            r = client.post(f"{base_url}/api/upscale", files={"file": (upload.name, upload.data, "image/png")},
                            data={"format": "png"})
        return upload, r, time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for upload, r, seconds in pool.map(one, uploads):
            result.statuses[r.status_code] = result.statuses.get(r.status_code, 0) + 1
            result.latencies.append(seconds)
            if upload.good:
                if r.status_code == 200:
                    with Image.open(io.BytesIO(r.content)) as im:
                        w, h = upload.size
                        if im.size != (4 * w, 4 * h):
                            result.wrong.append(f"{upload.name}: {im.size} instead of {(4 * w, 4 * h)}")
                elif r.status_code != 503 or "Retry-After" not in r.headers:
                    result.wrong.append(f"{upload.name}: HTTP {r.status_code} for a good upload")
            elif not 400 <= r.status_code < 500:
                result.wrong.append(f"{upload.name}: HTTP {r.status_code} for a bad upload")
    result.seconds = time.perf_counter() - start
    with httpx.Client(timeout=10) as client:
        result.alive = client.get(f"{base_url}/api/health").status_code == 200
    return result
