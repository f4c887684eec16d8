"""The HTTP front of ``hoe serve``: OpenAI's chat and text completions, models and a health check,
over one ``Engine``. Every request may carry its own preference; the response says how it was routed.

Bad input is HTTP 400 with OpenAI's error object (``{"error": {"message", "type", "param", "code"}}``)
naming the problem, never a 500 or a stack trace; a full queue is 429 with ``Retry-After``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from hoe.checkpoints.chat import uses_template
from hoe.errors import HoEError
from hoe.routing import parse_preference
from hoe.serving.engine import Engine, Job, QueueFull
from hoe.serving.protocol import SERVED_NAME, ChatRequest, CompletionRequest, ModelNotFound, preference_of
from hoe.serving.settings import ServeSettings

log = logging.getLogger(__name__)
DISCONNECT_POLL_SECONDS = 0.5


class Unauthorized(HoEError):
    """A missing or wrong API key (HTTP 401)."""


def error_response(status: int, message: str, kind: str, param: str | None = None, **headers) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """pydantic's first complaint about a body, in one line naming the field."""
    error = exc.errors()[0]
    where = [str(part) for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if error.get("type") == "extra_forbidden":
        return f"unknown field '{'.'.join(where)}'", ".".join(where)
    message = error.get("msg", "invalid request").removeprefix("Value error, ")
    field = ".".join(where) or None
    return (f"{field}: {message}" if field else message), field


class Server:
    """The model, its engine and what every request needs to know about the bundle."""

    def __init__(self, model, settings: ServeSettings, engine_thread: bool = True) -> None:
        self.model, self.settings = model, settings
        self.objectives = list(model.objectives)
        self.context = getattr(model.model.config, "max_position_embeddings", None)
        self.engine = Engine(
            model,
            max_batch=settings.max_batch,
            max_queue=settings.max_queue,
            thread=engine_thread,
            compile=settings.compile,
        )

    def check_key(self, request: Request) -> None:
        if self.settings.api_key is None:
            return
        if request.headers.get("authorization", "") != f"Bearer {self.settings.api_key}":
            raise Unauthorized("a valid API key is required: send 'Authorization: Bearer KEY'")

    def job(self, body: ChatRequest | CompletionRequest, emit) -> tuple[Job, dict]:
        """The engine's job for a request, and the routing it will use (checked before it queues)."""
        sent = preference_of(body, self.objectives)
        vector = parse_preference(sent, self.objectives) if sent is not None else None
        if vector is None:  # the default: every objective alike
            vector = [1.0 / len(self.objectives)] * len(self.objectives)
        prompt_ids = self._encode(body)
        budget = self._budget(body, len(prompt_ids))
        routing = self.model.routing(vector)
        job = Job(
            prompt_ids=prompt_ids,
            routing=routing,
            max_tokens=budget,
            emit=emit,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stops(),
        )
        used = {
            "preference": dict(zip(self.objectives, map(float, vector))),
            "routing": self.model.describe_routing(vector),
        }
        return job, used

    def _encode(self, body: ChatRequest | CompletionRequest) -> list[int]:
        tokenizer = self.model.tokenizer
        if isinstance(body, ChatRequest):
            messages = body.chat()
            if not any(m["content"].strip() for m in messages):
                raise HoEError("messages: every message is empty")
            if uses_template(tokenizer):  # as `hoe generate` encodes a prompt, so answers match it
                text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                return tokenizer(text, add_special_tokens=False)["input_ids"]
            return tokenizer("\n".join(m["content"] for m in messages))["input_ids"]
        if not body.prompt.strip():
            raise HoEError("prompt: the prompt is empty")
        return tokenizer(body.prompt)["input_ids"]

    def _budget(self, body, prompt_tokens: int) -> int:
        asked = body.token_budget()
        if self.context is None:
            return asked or self.settings.max_tokens
        room = self.context - prompt_tokens
        if room <= 0:
            raise HoEError(f"the prompt is {prompt_tokens} tokens; the model's context is {self.context}")
        if asked is not None and asked > room:
            raise HoEError(
                f"max_tokens: {asked} new tokens do not fit: the prompt takes {prompt_tokens} of the model's "
                f"{self.context}-token context"
            )
        return asked or min(self.settings.max_tokens, room)


def create_app(model, settings: ServeSettings, engine_thread: bool = True) -> FastAPI:
    """The FastAPI app serving ``model`` (a loaded ``HoEModel``). Without ``engine_thread`` nothing
    decodes until the caller runs ``app.state.server.engine.run()`` (``hoe serve`` does, on its main
    thread: see ``hoe.serving.engine``)."""
    server = Server(model, settings, engine_thread)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.engine.close()

    app = FastAPI(title="hoe serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    _add_error_handlers(app)
    key = Depends(server.check_key)

    @app.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        """The playground page: one file in the package, nothing loaded from elsewhere (the policy says so)."""
        page = resources.files("hoe.serving").joinpath("playground.html").read_text(encoding="utf-8")
        policy = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **server.engine.load}

    @app.get("/v1/models", dependencies=[key])
    async def models() -> dict:
        bundle = model.bundle
        return {
            "object": "list",
            "data": [
                {
                    "id": SERVED_NAME,
                    "object": "model",
                    "created": 0,
                    "owned_by": "hoe",
                    "hoe": {
                        "objectives": server.objectives,
                        "default_preference": dict.fromkeys(server.objectives, 1 / len(server.objectives)),
                        "experts": [{"name": e.name, "anchor": list(e.anchor)} for e in bundle.experts],
                        "routers": [{"name": r.name, "anchor": list(r.anchor)} for r in bundle.routers],
                        "base_model": bundle.spec.base_model,
                        "context_length": server.context,
                    },
                }
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[key])
    async def chat(body: ChatRequest, request: Request):
        return await _complete(server, body, request, chat=True)

    @app.post("/v1/completions", dependencies=[key])
    async def completions(body: CompletionRequest, request: Request):
        return await _complete(server, body, request, chat=False)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, "invalid_request_error", param)

    @app.exception_handler(HoEError)
    async def refused(request: Request, exc: HoEError):
        if isinstance(exc, Unauthorized):
            return error_response(401, str(exc), "invalid_request_error", **{"WWW-Authenticate": "Bearer"})
        if isinstance(exc, ModelNotFound):
            return error_response(404, str(exc), "invalid_request_error", "model")
        if isinstance(exc, QueueFull):
            return error_response(429, str(exc), "server_busy", None, **{"Retry-After": "1"})
        return error_response(400, str(exc), "invalid_request_error")

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):  # a bug: logged here, never shown to the client
        log.exception("request failed")
        return error_response(500, "internal server error", "server_error")


async def _complete(server: Server, body, request: Request, chat: bool):
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def emit(event: tuple) -> None:  # called from the engine's thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening
            pass

    job, used = server.job(body, emit)
    server.engine.submit(job)
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": body.model,
    }
    usage = lambda: {  # noqa: E731
        "prompt_tokens": len(job.prompt_ids),
        "completion_tokens": len(job.generated),
        "total_tokens": len(job.prompt_ids) + len(job.generated),
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(job, events, head, used, chat, usage if include_usage else None)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    text, finish = await _collect(job, events, request)
    if finish is None:  # the client left; nobody reads this
        return JSONResponse({}, status_code=499)
    choice = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        if chat
        else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    )
    kind = "chat.completion" if chat else "text_completion"
    return {**head, "object": kind, "choices": [choice], "usage": usage(), "hoe": used}


async def _collect(job: Job, events: asyncio.Queue, request: Request) -> tuple[str, str | None]:
    """The whole answer; a client that disconnects meanwhile frees its batch slot."""
    parts = []
    while True:
        try:
            kind, value = await asyncio.wait_for(events.get(), DISCONNECT_POLL_SECONDS)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancelled.set()
                return "".join(parts), None
            continue
        if kind == "delta":
            parts.append(value)
        elif kind == "done":
            return "".join(parts), value
        else:
            raise RuntimeError(value)


async def _stream(job: Job, events: asyncio.Queue, head: dict, used: dict, chat: bool, usage) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``. Leaving the
    generator early (the client disconnected) cancels the job, which frees its slot at the next step."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            payload = {"role": "assistant", "content": delta or ""} if first else ({"content": delta} if delta else {})
            choice = {"index": 0, "delta": payload, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
        body = {**head, "object": kind, "choices": [choice]}
        if first:
            body["hoe"] = used
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk(None, None, first=True)
        while True:
            event, value = await events.get()
            if event == "delta":
                yield chunk(value, None)
            elif event == "done":
                yield chunk(None, value)
                break
            else:
                error = {"error": {"message": value, "type": "server_error", "param": None, "code": None}}
                yield f"data: {json.dumps(error)}\n\n"
                break
        if usage is not None:
            yield f"data: {json.dumps({**head, 'object': kind, 'choices': [], 'usage': usage()})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a no-op once the job finished
