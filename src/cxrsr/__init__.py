"""cxrsr: 4x super-resolution of chest X-rays with Swift-SRGAN."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxrsr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0+source"

from .inference import Upscaler  # noqa: E402

__all__ = ["Upscaler", "__version__"]
