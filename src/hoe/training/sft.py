"""A short, resumable supervised fine-tune: the full model (or a LoRA of it) learns
(prompt → response) pairs.

It makes real single-objective models for the default runs (a full fine-tune gives task-SVD real
work to do). With a LoRA, the output is the merged model plus the peft adapter in ``adapter/``
(a HoE expert as it is). Loss is on response tokens only. Batches are drawn by step number from a seeded
permutation, so a resumed run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.checkpoints.chat import chat_prompt, uses_template
from hoe.checkpoints.loading import load_model, load_tokenizer
from hoe.errors import HoEError
from hoe.experts.trainable_lora import LoraSettings, attach_lora, save_adapter_and_merge
from hoe.training.settings import SFTSettings
from hoe.utils.io import atomic_dir, check_output_dir, write_json

STATE_NAME = "sft_state.json"


def encode_pair(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted pair and labels that mask the prompt (-100)."""
    prefix = chat_prompt(tokenizer, prompt) if uses_template(tokenizer) else f"{prompt}\n"
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    ids = (prefix_ids + response_ids)[:max_length]
    labels = ([-100] * len(prefix_ids) + response_ids)[:max_length]
    return ids, labels


def _batch(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id)
    labels = torch.full((len(encoded), width), -100)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def supervised_finetune(
    base: str | Path,
    pairs: list[tuple[str, str]],
    out: str | Path,
    settings: SFTSettings | None = None,
    *,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    extra_json: dict[str, dict] | None = None,
    lora: LoraSettings | None = None,
) -> dict:
    """Fine-tune every weight of ``base`` (or, with ``lora``, a new LoRA of it) on ``pairs`` and
    save a transformers folder at ``out`` (with ``extra_json`` files written inside it,
    atomically with the weights).

    Checkpoints go to ``<out>.partial`` every ``save_every`` steps; calling again with the same
    arguments resumes from there. Returns the training log (also saved in the folder).
    """
    settings = settings or SFTSettings()
    if lora is not None:
        lora.validate()
    if not pairs:
        raise HoEError("no training pairs")
    check_output_dir(out, overwrite, inputs=(base,), marker="config.json")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    tokenizer = load_tokenizer(base)
    log: dict = {
        "settings": settings.model_dump(),
        "lora": asdict(lora) if lora else None,
        "base": str(base),
        "losses": [],
        "step": 0,
        "seconds": 0.0,
    }
    resuming = (partial / STATE_NAME).is_file()
    if resuming:
        saved = json.loads((partial / STATE_NAME).read_text())
        if saved["settings"] != log["settings"] or saved.get("lora") != log["lora"]:
            raise HoEError(f"'{partial}' holds a run with other settings; remove it to start afresh")
        log = saved
    model = _trainable_model(base, partial if resuming else None, lora, device, settings.seed)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if resuming:
        optimizer.load_state_dict(torch.load(partial / "optimizer.pt", weights_only=True))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(settings.seed)).tolist()
    encoded = [encode_pair(tokenizer, *pairs[i], settings.max_length) for i in order]
    _check_response_room(encoded, settings.max_length)
    bar = tqdm(total=settings.steps, initial=log["step"], desc="fine-tune", unit="step", disable=not progress)
    while log["step"] < settings.steps:
        start = time.perf_counter()
        first = log["step"] * settings.batch_size
        rows = [encoded[(first + k) % len(encoded)] for k in range(settings.batch_size)]
        batch = {k: v.to(device) for k, v in _batch(rows, tokenizer.pad_token_id).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        log["step"] += 1
        value = float(loss.detach())
        log["losses"].append(round(value, 5))
        log["seconds"] += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        if log["step"] % settings.save_every == 0 and log["step"] < settings.steps:
            _checkpoint(model, tokenizer, optimizer, log, partial)
    bar.close()
    model.eval()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if lora is not None:
            model = save_adapter_and_merge(model, tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "sft_log.json", log)
        for name, content in (extra_json or {}).items():
            write_json(tmp / name, content)
    shutil.rmtree(partial, ignore_errors=True)
    return log


def check_prompt_room(tokenizer, prompts: list[str], max_length: int) -> None:
    """Refuse before any sampling when every prompt alone fills ``max_length``: no response token of
    any candidate could be learned (``_check_response_room`` would say so only after sampling)."""
    room = [any(label != -100 for label in encode_pair(tokenizer, prompt, "", max_length)[1]) for prompt in prompts]
    if prompts and not any(room):
        raise HoEError(
            f"every prompt is longer than max-length {max_length} tokens, so no response token is left to learn; raise "
            "max-length"
        )


def _check_response_room(encoded: list[tuple[list[int], list[int]]], max_length: int) -> None:
    """Pairs whose prompt fills max_length teach nothing: refuse if every pair is such, warn if some are."""
    empty = sum(all(label == -100 for label in labels) for _, labels in encoded)
    if empty == len(encoded):
        raise HoEError(
            f"every prompt is longer than max-length {max_length} tokens, so no response token is left to learn; raise "
            "max-length"
        )
    if empty:
        import warnings

        warnings.warn(
            f"{empty} of {len(encoded)} training pairs have no response token within max-length {max_length}; they "
            "teach nothing",
            stacklevel=2,
        )


def _trainable_model(base, checkpoint: Path | None, lora: LoraSettings | None, device: str, seed: int):
    """The model to train: the base (or the checkpoint's full weights), or the base under a new
    LoRA (or under the checkpoint's adapter)."""
    if lora is None:
        return load_model(checkpoint or base, dtype="float32", device=device)
    model = load_model(base, dtype="float32", device=device)
    if checkpoint is None:
        return attach_lora(model, lora, seed=seed)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)


def _checkpoint(model, tokenizer, optimizer, log: dict, partial: Path) -> None:
    """Replace the resumable checkpoint atomically."""
    with atomic_dir(partial, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / STATE_NAME, log)
