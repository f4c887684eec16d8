"""Loading a bundle and serving it: what ``hoe serve`` runs."""

from __future__ import annotations

from pathlib import Path

from hoe.checkpoints.loading import resolve_device
from hoe.errors import HoEError
from hoe.model.hoe_model import HoEModel
from hoe.serving.app import create_app
from hoe.serving.settings import ServeSettings

DEMO_BUNDLE = Path("runs/demo/2-objectives/bundle")  # where `make demo` leaves its two-objective bundle


def default_bundle() -> Path:
    """The demo's bundle, when ``--bundle`` is not given."""
    if not (DEMO_BUNDLE / "hoe.json").is_file():
        raise HoEError(
            f"no --bundle given and no demo bundle at {DEMO_BUNDLE}: run `make demo` first, or pass --bundle"
        )
    return DEMO_BUNDLE


def load_server(settings: ServeSettings):
    """The FastAPI app for ``settings``; the bundle is checked before any weight is read."""
    model = HoEModel.from_bundle(settings.bundle, device=resolve_device(settings.device), dtype=settings.dtype)
    return create_app(model.eval(), settings)


def serve(settings: ServeSettings) -> None:
    """Load the bundle and serve it until interrupted."""
    import uvicorn  # the server process only: the app itself does not need it

    uvicorn.run(load_server(settings), host=settings.host, port=settings.port, log_level="warning")
