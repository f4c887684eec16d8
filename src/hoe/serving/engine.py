"""Continuous batching for ``HoEModel``: requests with different preferences decode together, one
token per row per step, and join or leave the batch at any token boundary.

Why our own small scheduler rather than transformers' continuous batching: HoE routes each *row* by
its own λ (``RoutingState`` holds one routing per row of the batch), while transformers' continuous
batching packs every request into one flattened row with paged attention, which would need a routing
per token. Here the batch stays a plain left-padded batch with a ``DynamicCache``:

- a newcomer is prefilled on its own (with the other newcomers of the same step) and its cache is
  left-padded and concatenated onto the running batch's, so it starts decoding at the next step
  instead of waiting for the batch to finish;
- a finished, cancelled or disconnected row is dropped from the cache (``batch_select_indices``) and
  the padding columns no remaining row needs are cropped, so a long request does not keep the batch
  wide after it leaves.

Greedy rows give what ``HoEModel.generate`` gives for the request alone (tested); sampled rows draw
from their own seeded generator, so a seed reproduces a request whatever else shares its batch.

Which thread decodes matters on a CPU. torch's OpenMP runtime (libgomp) keeps one pool of worker
threads per thread that ever ran a parallel region, and once it manages more threads than there
are cores it stops its workers from spin-waiting between regions; every GEMM then pays a wake-up.
A decoding thread beside a main thread that loaded the model gave 0.7× the main thread's tokens/s
for the base model and 0.6× for a HoE batch (SmolLM2-135M, 16 rows with a random λ each, 2 cores:
``benchmarks/serving/engine_alone.json``). So ``hoe serve`` decodes
on the main thread (``Engine(..., thread=False)`` then ``run``) and serves HTTP from another;
the engine's own thread remains for tests and notebooks.

``compile=True`` (``hoe serve --compile``) runs the decoding step and one-row prefills through
``torch.compile``, compiled once by ``warm_up``; see ``_forward`` for which calls and why.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from hoe.errors import HoEError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request inside the engine. ``emit`` is called from the engine's thread with
    ``("delta", text)``, then once ``("done", finish_reason)`` or ``("error", message)``."""

    prompt_ids: list[int]
    routing: dict[int, float]
    max_tokens: int
    emit: Callable[[tuple], None]
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    sent: str = ""  # text emitted so far
    generator: torch.Generator | None = None
    finish_reason: str | None = None
    number: int = -1  # set by the engine: unique for its lifetime (an id() may be reused)


class QueueFull(HoEError):
    """More requests wait than ``max_queue`` allows."""


class Engine:
    """Owns the model and decodes every admitted job one token per step, on a thread of its own or
    (``thread=False``) on whichever thread calls ``run``."""

    def __init__(
        self, model, *, max_batch: int = 16, max_queue: int = 64, thread: bool = True, compile: bool = False
    ) -> None:
        self.model, self.tokenizer = model, model.tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.eos = _eos_ids(model)
        self.waiting: collections.deque[Job] = collections.deque()
        self.rows: list[Job] = []
        self.cache = None
        self.mask: torch.Tensor | None = None
        self.next_tokens: torch.Tensor | None = None
        self.wake = threading.Condition()
        self.stopped = False
        self.steps = 0
        self.admitting = 0  # jobs taken from the queue whose prefill is under way
        self.routed: tuple | None = None  # the jobs (by number) the routing state holds, row by row, and how
        self.numbers = itertools.count()
        self.compiled = None  # the decoding step through torch.compile (``compile=True``): see ``warm_up``
        if compile:
            self.compiled = torch.compile(model.model.forward, dynamic=True)
            self.warm_up()
        self.thread: threading.Thread | None = None
        if thread:  # else the caller runs the loop itself (``run``) on the thread of its choice
            self.thread = threading.Thread(target=self.run, name="hoe-engine", daemon=True)
            self.thread.start()

    # ---- the request side ------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self.wake:
            free = self.max_batch - len(self.rows) - self.admitting
            if len(self.waiting) >= self.max_queue + max(0, free):
                raise QueueFull(f"the server is busy ({len(self.waiting)} requests waiting); retry shortly")
            if job.seed is not None:
                job.generator = torch.Generator().manual_seed(job.seed)
            job.number = next(self.numbers)
            self.waiting.append(job)
            self.wake.notify()

    def close(self) -> None:
        with self.wake:
            self.stopped = True
            self.wake.notify()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)

    @property
    def load(self) -> dict:
        return {"running": len(self.rows), "waiting": len(self.waiting), "steps": self.steps}

    # ---- the decoding loop -----------------------------------------------------------------
    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Decode until ``close``, or until ``until()`` is true: it is asked whenever the engine is
        idle, at least twice a second, so a loop on the main thread notices a server that died."""
        while True:
            with self.wake:
                while not self.stopped and not self.waiting and not self.rows:
                    if until is not None and until():
                        self.stopped = True
                        break
                    self.wake.wait(timeout=None if until is None else 0.5)
                if self.stopped:
                    break
                room = self.max_batch - len(self.rows)
                newcomers = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
                self.admitting = len(newcomers)
            try:
                with torch.no_grad():
                    self._step([j for j in newcomers if not j.cancelled.is_set()])
            except Exception as exc:  # a failed step fails its rows, never the server
                log.exception("decoding step failed")
                for job in self.rows + newcomers:
                    if job.finish_reason is None:
                        job.emit(("error", f"generation failed: {type(exc).__name__}: {exc}"))
                self._empty_batch()
            self.admitting = 0
        for job in self.rows + list(self.waiting):
            job.emit(("error", "the server is shutting down"))

    def _step(self, newcomers: list[Job]) -> None:
        if self.rows:
            self._decode()
        if newcomers and self.compiled is not None:  # one compiled prefill graph, for one row, without padding
            for job in newcomers:
                self._admit([job])
        elif newcomers:
            self._admit(newcomers)
        self.steps += 1

    def _admit(self, jobs: list[Job]) -> None:
        """Prefill the newcomers together and append them to the running batch."""
        from transformers import DynamicCache

        width = max(len(j.prompt_ids) for j in jobs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(j.prompt_ids)) + j.prompt_ids for j in jobs])
        mask = torch.tensor([[0] * (width - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in jobs])
        cache = DynamicCache()
        logits = self._forward(jobs, ids, mask, cache)
        tokens = torch.stack([_sample(row, job) for row, job in zip(logits, jobs)])
        if self.rows:
            self.cache, self.mask = _concat(self.cache, self.mask, cache, mask)
            self.next_tokens = torch.cat([self.next_tokens, tokens])
        else:
            self.cache, self.mask, self.next_tokens = cache, mask, tokens
        self.rows += jobs
        self._emit_and_retire(list(range(len(self.rows) - len(jobs), len(self.rows))))

    def _decode(self) -> None:
        """One token for every running row."""
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=self.mask.dtype)], dim=1)
        logits = self._forward(self.rows, self.next_tokens[:, None], self.mask, self.cache)
        self.next_tokens = torch.stack([_sample(row, job) for row, job in zip(logits, self.rows)])
        self._emit_and_retire(list(range(len(self.rows))))

    def warm_up(self) -> None:
        """Compile the prefill and the decoding step before the first request needs them (minutes on
        a CPU): four tokens of 13 rows of different lengths, decoded on the calling thread and thrown
        away.

        The sizes matter: ``dynamic=True`` shares one symbol between dimensions that happen to be
        equal when a step is first compiled, so a batch of 3 rows beside a model with 3 key-value
        heads compiles a step for 3 rows only. 13 rows of 21 to 33 tokens match no dimension of
        the usual small models; should one match, the first real batch of another size compiles
        once more."""
        start = time.perf_counter()
        ids = self.tokenizer(" ".join(["Warming up the compiled decoding step of the server."] * 8))["input_ids"]
        jobs = [Job(ids[:length], {}, max_tokens=4, emit=lambda event: None) for length in range(21, 34)]
        for job in jobs:
            job.number = next(self.numbers)
        try:
            with torch.no_grad():
                self._step(jobs)
                while self.rows:
                    self._step([])
        except Exception as exc:  # e.g. no C++ compiler for inductor: one line, before any request
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise HoEError(f"compiling the decoding step failed: {type(exc).__name__}: {first_line}") from None
        finally:
            self._empty_batch()
        log.info("compiled the decoding step in %.0f s", time.perf_counter() - start)

    def _forward(self, jobs: list[Job], ids: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """Last-position logits of ``ids`` (the newest ``ids.shape[1]`` tokens of each row), each row
        routed by its own λ. With ``compile``, two graphs run compiled: a decoding step of two rows or
        more, and the prefill of one row (newcomers are then prefilled one by one), each compiled once
        by ``warm_up`` for any number of rows or tokens. There the layers take their one dense code
        path (``RoutingState.set``), so a new routing is new input values, not a recompile. A lone
        row's decoding step stays eager (a third graph to compile for the one-client case), through
        the per-layout plans, which launch half the kernels of the dense path."""
        device = self.model.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        decoding, prefilling_one = ids.shape[1] == 1 and len(jobs) > 1, ids.shape[1] > 1 and len(jobs) == 1
        compiled = self.compiled is not None and (decoding or prefilling_one)
        rows = ([j.number for j in jobs], compiled)
        if rows != self.routed:  # the batch changed: route its rows (the layers' plans are rebuilt once)
            dense = (device, next(self.model.model.parameters()).dtype) if compiled else None
            self.model.state.set([j.routing for j in jobs], dense=dense)
            self.routed = rows
        try:
            out = (self.compiled if compiled else self.model.model)(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,  # only the next token's: a prompt's full logits are vocabulary × length
            )
        except BaseException:
            self.model.state.clear()
            self.routed = None
            raise
        return out.logits[:, -1].float().cpu()

    def _emit_and_retire(self, indices: list[int]) -> None:
        """Send each row's new text; drop the rows that finished or whose client left."""
        for i in indices:
            job, token = self.rows[i], int(self.next_tokens[i])
            if job.cancelled.is_set():
                job.finish_reason = "cancelled"
                continue
            if token in self.eos:
                job.finish_reason = "stop"
            else:
                job.generated.append(token)
                if len(job.generated) >= job.max_tokens:
                    job.finish_reason = "length"
            self._send_text(job)
        keep = [i for i, job in enumerate(self.rows) if job.finish_reason is None and not job.cancelled.is_set()]
        if len(keep) == len(self.rows):
            return
        for job in self.rows:
            if job.finish_reason is not None and job.finish_reason != "cancelled":
                job.emit(("done", job.finish_reason))
        if not keep:
            self._empty_batch()
            return
        index = torch.tensor(keep)
        self.rows = [self.rows[i] for i in keep]
        self.cache.batch_select_indices(index)
        self.mask, self.next_tokens = self.mask[index], self.next_tokens[index]
        self._crop_padding()

    def _empty_batch(self) -> None:
        self.rows, self.cache, self.mask, self.next_tokens = [], None, None, None

    def _send_text(self, job: Job) -> None:
        """Emit the text the new token completes, holding back what may still become a stop string
        or an incomplete UTF-8 character."""
        text = self.tokenizer.decode(job.generated, skip_special_tokens=True)
        cut = min((text.find(s) for s in job.stop if s in text), default=-1)
        if cut >= 0:
            text, job.finish_reason = text[:cut], "stop"
        elif job.finish_reason is None:
            hold = max((len(s) - 1 for s in job.stop), default=0)
            text = text[: len(text) - hold] if hold else text
            text = text.rstrip("\ufffd")
        if len(text) > len(job.sent) and text.startswith(job.sent):
            job.emit(("delta", text[len(job.sent) :]))
            job.sent = text

    def _crop_padding(self) -> None:
        """Drop the leading columns that are padding in every remaining row."""
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                # contiguous: a strided view would be a new input layout for a compiled step
                layer.keys = layer.keys[:, :, start:].contiguous()
                layer.values = layer.values[:, :, start:].contiguous()


def _concat(cache_a, mask_a: torch.Tensor, cache_b, mask_b: torch.Tensor):
    """Two left-padded batches as one: the shorter is padded on the left to the longer's length."""
    length = max(mask_a.shape[1], mask_b.shape[1])
    for layer_a, layer_b in zip(cache_a.layers, cache_b.layers):
        layer_a.keys = torch.cat([_left_pad(layer_a.keys, length, 2), _left_pad(layer_b.keys, length, 2)])
        layer_a.values = torch.cat([_left_pad(layer_a.values, length, 2), _left_pad(layer_b.values, length, 2)])
    return cache_a, torch.cat([_left_pad(mask_a, length, 1), _left_pad(mask_b, length, 1)])


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _sample(logits: torch.Tensor, job: Job) -> torch.Tensor:
    """The next token of one row: argmax when greedy, else nucleus sampling from its generator."""
    if job.temperature == 0:
        return logits.argmax()
    probs = torch.softmax(logits / job.temperature, dim=-1)
    if job.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > job.top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=job.generator)[0]


def _eos_ids(model) -> set[int]:
    ids = model.model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if model.tokenizer.eos_token_id is not None:
        ids.add(model.tokenizer.eos_token_id)
    return ids


def wait_idle(engine: Engine, timeout: float = 10.0) -> bool:
    """Whether the engine has no running or waiting job within ``timeout`` seconds (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not engine.rows and not engine.waiting:
            return True
        time.sleep(0.01)
    return False
