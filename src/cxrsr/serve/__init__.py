"""``cxrsr serve``: an HTTP API (FastAPI) and a browser viewer for comparing bicubic and cxrsr.

Optional: ``pip install "cxrsr[serve]"``. ``create_app`` builds the application; ``ServeConfig`` holds its limits.
"""

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(config: ServeConfig | None = None):
    from .app import create_app as _create

    return _create(config or ServeConfig())
