"""Network architectures."""

from .swift_srgan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, count_parameters

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "count_parameters"]
