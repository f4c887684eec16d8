"""``hoe serve``'s settings: one model for the CLI and the API (``serve_bundle``)."""

from __future__ import annotations

from pydantic import Field

from hoe.settings import DtypeName, Settings


class ServeSettings(Settings):
    """One server: where it listens, what it serves, how many requests it decodes and queues."""

    bundle: str = Field(description="Bundle folder to serve.")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on (localhost unless you mean otherwise)."
    )
    port: int = Field(8000, ge=0, le=65535, description="Port (0: any free port).")
    device: str = Field("auto", description="cpu, cuda, cuda:N, mps or auto.")
    dtype: DtypeName = Field("float32", description="Model dtype.")
    max_batch: int = Field(16, gt=0, le=256, description="Requests decoded together, one token each per step.")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a batch slot; more get 429.")
    compile: bool = Field(
        False,
        description="Compile the decoding step (torch.compile): faster decoding of mixed preferences, "
        "a few minutes more at start (needs a C++ compiler on a CPU).",
    )
    max_tokens: int = Field(256, gt=0, description="max_tokens of a request that names none.")
    api_key: str | None = Field(
        None, description="Require 'Authorization: Bearer KEY' on every endpoint but /health (also HOE_API_KEY)."
    )
