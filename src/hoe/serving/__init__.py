"""``hoe serve``: one deployed HoE model, a preference per request, over OpenAI's HTTP API.

``hoe.serving.server`` loads and serves a bundle (``serve``, ``load_server``), ``app`` is the FastAPI
app, ``engine`` the continuous-batching scheduler. This package's own import stays light (the CLI
reads ``ServeSettings`` at startup); the web stack (FastAPI, uvicorn: ``pip install 'hoe[serve]'``)
is imported by those modules only."""

from hoe.serving.settings import ServeSettings

__all__ = ["ServeSettings"]
