"""Metrics and the benchmark protocol."""

from .evaluate import (BASELINES, Score, evaluate, score_pairs, summarise, upscaler_sr,
                       upscaler_sr_by_steps)
from .protocol import Pair, load_grey, load_pair, make_hr, psnr, ssim

__all__ = ["BASELINES", "Pair", "Score", "evaluate", "load_grey", "load_pair", "make_hr", "psnr",
           "score_pairs", "ssim", "summarise", "upscaler_sr",
           "upscaler_sr_by_steps"]
