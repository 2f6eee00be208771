"""Randomly initialised generators with trained-looking BatchNorm statistics, for checks that a fast path
computes the same function as the reference (tests/test_fastpaths.py and tests/fused_check.py)."""

import torch

from cxrsr.models import Generator, GeneratorConfig


def random_generator(scale: int = 4, blocks: int = 3, seed: int = 1, slopes_and_biases: bool = False) -> Generator:
    """A 16-channel generator in eval mode with non-trivial BatchNorm statistics, as after training; with
    ``slopes_and_biases`` also PReLU slopes of both signs and non-zero convolution biases."""
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(scale=scale, channels=16, blocks=blocks))
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if slopes_and_biases and isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.3, 0.5)
        if slopes_and_biases and isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data.uniform_(-0.1, 0.1)
    return g.eval()
