"""Loading a bundle and serving it: what ``hoe serve`` runs."""

from __future__ import annotations

import signal
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


def load_server(settings: ServeSettings, engine_thread: bool = True):
    """The FastAPI app for ``settings``; the bundle is checked before any weight is read."""
    model = HoEModel.from_bundle(settings.bundle, device=resolve_device(settings.device), dtype=settings.dtype)
    return create_app(model.eval(), settings, engine_thread)


def serve(settings: ServeSettings) -> None:
    """Load the bundle and serve it until interrupted: HTTP from a thread, decoding on this (the main)
    thread, which loaded the weights (why: ``hoe.serving.engine``'s docstring)."""
    serve_app(load_server(settings, engine_thread=False), settings.host, settings.port)


def serve_app(app, host: str, port: int) -> None:
    """Serve an app made with ``engine_thread=False``. The first Ctrl-C or SIGTERM stops accepting
    requests and lets the running ones finish (the engine keeps decoding them); a second one quits.
    The handlers go in before the HTTP server starts: a signal that lands while it starts (a client can
    already hold a stream's first chunk then) must stop it gracefully, not kill the process."""
    engine = app.state.server.engine
    http: BackgroundServer | None = None
    signals = 0

    def stop(signum, frame) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            raise KeyboardInterrupt
        if http is not None:
            http.server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        http = BackgroundServer(app, host, port, log_level="warning")
        if signals:  # it came while the server started, when `stop` had no server to stop yet
            http.server.should_exit = True
        engine.run(until=lambda: not http.thread.is_alive())  # the app's shutdown closes the engine
    except KeyboardInterrupt:
        if http is not None:
            http.server.force_exit = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if http is not None:
            http.stop()


class BackgroundServer:
    """An app served by uvicorn in a thread of this process, on ``port`` (0: a free one, read back once
    it listens): for tests, benchmarks and notebooks. ``stop()`` shuts it down."""

    def __init__(
        self, app, host: str = "127.0.0.1", port: int = 0, start_seconds: float = 60, log_level: str = "error"
    ) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
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
