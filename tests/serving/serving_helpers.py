"""A real server for the serving tests: the app in a thread on a free localhost port. (A module of its own,
not a conftest.py: the tests' `from conftest import ...` must keep meaning tests/conftest.py.)"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai

from hoe.serving.app import create_app
from hoe.serving.engine import Engine
from hoe.serving.server import BackgroundServer
from hoe.serving.settings import ServeSettings


class Running(BackgroundServer):
    """The app for ``model`` with ``settings``, served in a thread on a free localhost port."""

    def __init__(self, model, **settings) -> None:
        self.app = create_app(model, ServeSettings(bundle="unused", **settings))
        super().__init__(self.app)
        self.engine: Engine = self.app.state.server.engine

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def post(self, path: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())
