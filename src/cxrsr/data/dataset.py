"""Training data: HR patches from chest X-ray files and their protocol LR, reproducible sample by sample.

Sample ``g`` (the g-th sample drawn in the run, over all ranks) is fully determined by (seed, g): which file
(a per-epoch permutation) and every random choice of its augmentation. So a resumed run draws exactly the
samples an uninterrupted run would have, whatever the number of loader workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from ..evaluation.protocol import load_grey
from ..io import InputFileError
from .augment import AugmentConfig, random_patch
from .degrade import make_lr

log = logging.getLogger(__name__)


class PatchDataset(Dataset):
    """Indexed by ``(file_index, sample_seed)``; returns (LR, HR) float32 tensors of shape (1, h, w)."""

    def __init__(self, files: list[Path], hr_size: int = 256, scale: int = 4, augment: AugmentConfig | None = None,
                 cache: bool = True, cache_gb: float = 4.0) -> None:
        if hr_size % scale:
            raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}")
        if not files:
            raise ValueError("no training images")
        if cache_gb < 0:
            raise ValueError(f"cache_gb must be >= 0, got {cache_gb}")
        self.files = list(files)
        self.hr_size, self.scale, self.augment = hr_size, scale, augment
        self.cache: dict[int, np.ndarray] | None = {} if cache and cache_gb > 0 else None
        self.cache_bytes_total = int(cache_gb * 2**30)
        self.cache_bytes = 0
        self.bad: set[int] = set()  # files found unreadable or too small (in this process)

    def __len__(self) -> int:
        return len(self.files)

    def cache_budget(self) -> int:
        """Bytes this process may cache: the dataset's budget shared out over the loader's worker processes,
        each of which holds its own copy of the dataset (what :meth:`preload` cached before they started
        counts for each of them, and is shared)."""
        info = get_worker_info()
        return self.cache_bytes_total // (info.num_workers if info is not None else 1)

    def image(self, index: int) -> np.ndarray:
        """The grey image in [0, 1] as float32 (a 1024 x 1024 image is 4 MiB).

        Decoded images are kept until this process's share of ``cache_gb`` is full; later files are decoded on
        every visit. Files are drawn in a new random order each epoch, so keeping the first ones is as good as
        any eviction policy, and a data set larger than the budget cannot exhaust memory."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        a = self._read(index)
        if self.cache is not None and self.cache_bytes + a.nbytes <= self.cache_budget():
            self.cache[index] = a
            self.cache_bytes += a.nbytes
        return a

    def preload(self, threads: int = 0) -> int:
        """Decode images in file order, with a pool of threads, into the cache until ``cache_gb`` is full;
        returns how many are cached. Called before the loader starts its workers, it gives them one shared
        copy (forked processes share the parent's memory until it is written, and cached images never are)
        instead of one copy each, and every worker starts warm instead of decoding files in its first epoch.
        Unreadable files are reported and skipped here, once."""
        if self.cache is None:
            return 0
        threads = threads or os.cpu_count() or 1
        with ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(self.files), 4 * threads):  # a few images ahead, not the whole data set
                chunk = [i for i in range(start, min(start + 4 * threads, len(self.files)))
                         if i not in self.cache and i not in self.bad]
                for i, decoded in zip(chunk, pool.map(self._decode, chunk)):
                    if isinstance(decoded, InputFileError):
                        self._skip(i, str(decoded))
                    elif self.cache_bytes + decoded.nbytes <= self.cache_bytes_total:
                        self.cache[i] = decoded
                        self.cache_bytes += decoded.nbytes
                    else:
                        return len(self.cache)
        return len(self.cache)

    def _read(self, index: int) -> np.ndarray:
        return load_grey(self.files[index]).astype(np.float32)

    def _decode(self, index: int) -> np.ndarray | InputFileError:  # for the preload's thread pool
        try:
            return self._read(index)
        except InputFileError as exc:
            return exc

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample drawn from file ``index`` with ``seed``. A file that cannot be read, or is smaller than
        the patch, is reported once (by name) and the next file in the list stands in for it, with the same
        seed, so one bad file among thousands does not end a run and the stream stays reproducible."""
        index, seed = item
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self.bad:
                continue
            try:
                image = self.image(i)
            except InputFileError as exc:
                self._skip(i, str(exc))
                continue
            size = self.hr_size if self.hr_size > 0 else min(image.shape) // self.scale * self.scale
            if min(image.shape) < max(size, self.scale):
                self._skip(i, f"{self.files[i]}: image {image.shape[1]}x{image.shape[0]} is smaller than the "
                              f"{size}x{size} training patch")
                continue
            hr = random_patch(image, size, np.random.default_rng(seed), self.augment)
            lr = make_lr(hr.astype(np.float64), self.scale).astype(np.float32)
            return torch.from_numpy(lr)[None], torch.from_numpy(hr)[None]
        raise InputFileError(self.files[index], "no training image could be used (every file was skipped)")

    def _skip(self, index: int, reason: str) -> None:
        self.bad.add(index)
        log.warning("skipping a training image: %s", reason)


class StepSampler(Sampler):
    """Endless stream of ``(file_index, sample_seed)`` for one rank, starting at a given global step."""

    def __init__(self, num_files: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.n, self.batch, self.seed = num_files, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def _file(self, g: int) -> int:
        epoch = g // self.n
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perms[epoch][g % self.n])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            first = (step * self.world + self.rank) * self.batch
            for g in range(first, first + self.batch):
                yield self._file(g), int(np.random.SeedSequence([self.seed, g]).generate_state(1)[0])
            step += 1

    def __len__(self) -> int:  # endless; DataLoader needs a length only for len(loader)
        return 2**62
