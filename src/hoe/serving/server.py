"""Loading a bundle and serving it: what ``hoe serve`` runs."""

from __future__ import annotations

import threading
import time
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


class BackgroundServer:
    """An app served by uvicorn in a thread of this process, on ``port`` (0: a free one, read back once
    it listens): for tests, benchmarks and notebooks. ``stop()`` shuts it down."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, start_seconds: float = 60) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_seconds
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HoEError(f"the server did not start on {host}:{port}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
