"""``hoe serve``: one deployed HoE model, a preference per request, over OpenAI's HTTP API."""

from __future__ import annotations

from pathlib import Path

from hoe.errors import HoEError
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
    """The app for ``settings``: the bundle is checked (and its weights loaded) before anything listens."""
    from hoe.checkpoints.loading import resolve_device
    from hoe.model.hoe_model import HoEModel
    from hoe.serving.app import create_app

    model = HoEModel.from_bundle(settings.bundle, device=resolve_device(settings.device), dtype=settings.dtype)
    model.eval()
    return create_app(model, settings)


def serve(settings: ServeSettings) -> None:
    """Load the bundle and serve it until interrupted."""
    import uvicorn

    app = load_server(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


__all__ = ["ServeSettings", "default_bundle", "load_server", "serve"]
