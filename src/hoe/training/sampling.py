"""Candidate responses sampled from a model, k per prompt, cached and resumable.

Candidates are sampled once and shared: by the conflict measurement, and by every expert that
RAFT or DPO makes from the same base and prompts. Each finished batch is appended to the cache
file, so an interrupted run continues where it stopped (batch b samples with seed + b).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.checkpoints.chat import encode_prompts
from hoe.checkpoints.loading import cache_root, load_model, load_tokenizer, resolve_checkpoint
from hoe.training.settings import SamplingSettings

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def weights_stamp(folder: Path) -> list[list[str | int]]:
    """[name, size, modification time] of each weight file in the model folder. Why: a folder's path alone
    does not say which model it holds; a model made again at the same path (``make-expert --overwrite``, or
    iterated DPO's ``round-1`` of a job run again with other settings) must not reuse the last one's samples.
    Lists, not tuples: a stamp saved as JSON and read back compares equal to a fresh one."""
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix in WEIGHT_SUFFIXES)
    stats = [(path.name, path.stat()) for path in files]
    return [[name, stat.st_size, stat.st_mtime_ns] for name, stat in stats]


def candidates_file(model: str, prompts: list[str], settings: SamplingSettings) -> Path:
    folder = resolve_checkpoint(model).resolve()
    source = [str(folder), weights_stamp(folder)]
    key = hashlib.sha1(json.dumps([source, prompts, asdict(settings)]).encode()).hexdigest()[:16]
    return cache_root() / "candidates" / f"{key}.jsonl"


def sample_candidates(
    model: str,
    prompts: list[str],
    settings: SamplingSettings | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """[{"prompt", "responses": [k texts]}] for ``prompts``, from the cache where already sampled."""
    settings = settings or SamplingSettings()
    settings.validate()
    path = candidates_file(model, prompts, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.is_file() else []
    done = []
    for line in lines:
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything from here is sampled again
    if len(done) < len(prompts):  # keep whole batches only, so batch b still samples with seed + b
        done = done[: len(done) - len(done) % settings.batch_prompts]
    if len(done) != len(lines):  # cut back a partial batch or a broken line before appending
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in done))
    if len(done) >= len(prompts):
        return done[: len(prompts)]
    lm = load_model(model, device=device)
    tokenizer = load_tokenizer(model)
    tokenizer.padding_side = "left"
    starts = range(len(done), len(prompts), settings.batch_prompts)
    for start in tqdm(starts, desc="sample", unit="batch", disable=not progress):
        batch = prompts[start : start + settings.batch_prompts]
        inputs = encode_prompts(tokenizer, batch).to(device)
        torch.manual_seed(settings.seed + start // settings.batch_prompts)
        with torch.no_grad():
            output = lm.generate(
                **inputs,
                do_sample=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_new_tokens=settings.max_new_tokens,
                num_return_sequences=settings.k,
                pad_token_id=tokenizer.pad_token_id,
            )
        decoded = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        rows = [
            {"prompt": p, "responses": [d.strip() for d in decoded[i * settings.k : (i + 1) * settings.k]]}
            for i, p in enumerate(batch)
        ]
        with path.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        done += rows
    return done
