"""Tiny Llama-style models with random weights, built in the test: no network, no 135M model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

# Property tests (hypothesis): 300 examples each, or 40 under `make mutation` (HOE_TEST_PROFILE=mutation),
# where a mutant that makes routing slow would otherwise spend minutes in one test before timing out.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("hoe", max_examples=300, deadline=None)
hypothesis_settings.register_profile(
    "mutation", max_examples=40, deadline=None, derandomize=True
)  # the same examples every run
hypothesis_settings.load_profile("mutation" if os.environ.get("HOE_TEST_PROFILE") == "mutation" else "hoe")

# Where the device-aware tests (router training, evaluation) run: cpu in CI; HOE_TEST_DEVICE=cuda
# on a GPU machine checks the same code paths there.
DEVICE = os.environ.get("HOE_TEST_DEVICE", "cpu")


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    values = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def save_tiny_llama(folder: Path, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny Llama (2 layers, hidden 64) as a transformers folder."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(**overrides))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def plant_low_rank(
    base: Path, out: Path, rank: int, seed: int = 1, scale: float = 0.05, touch_norms: bool = False
) -> dict:
    """Write a fine-tuned copy of ``base`` whose every projection differs by an exact rank-``rank`` delta.

    Returns the planted deltas by module name. With ``touch_norms`` the norm weights move too
    (experts leave those out and report their delta norm).
    """
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(seed)
    deltas = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in PROJECTIONS:
                out_dim, in_dim = module.weight.shape
                delta = (
                    scale
                    * torch.randn(out_dim, rank, generator=generator)
                    @ torch.randn(rank, in_dim, generator=generator)
                    / rank**0.5
                )
                module.weight += delta
                deltas[name] = delta
            elif touch_norms and name.endswith("input_layernorm"):
                module.weight += 0.01
    model.save_pretrained(out, safe_serialization=True)
    return deltas


def reusable(tmp_path_factory, name: str, make) -> Path:
    """A session fixture's folder, made by ``make(folder)``. With HOE_TEST_CACHE set (``make
    mutation`` sets it: mutmut forks a fresh process per mutant, and the tiny bundle alone takes
    ~5 s to build) the folder is made once there and reused; a lock keeps parallel runs from
    building it twice. Every maker is deterministic (seeded), so a reused folder is the same."""
    cache = os.environ.get("HOE_TEST_CACHE")
    if not cache:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    folder = Path(cache) / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return reusable(tmp_path_factory, "base", lambda f: save_tiny_llama(f / "model")) / "model"


@pytest.fixture(scope="session")
def tiny_planted(tiny_base, tmp_path_factory):
    """(folder, deltas) of a fine-tune of ``tiny_base`` with rank-4 deltas on all projections."""
    folder = tmp_path_factory.mktemp("ft") / "model"
    deltas = plant_low_rank(tiny_base, folder, rank=4)
    return folder, deltas


def tiny_gpt2(seed: int = 3):
    """A tiny GPT-2 with sharp outputs and strong learned absolute position embeddings: unlike RoPE,
    which only sees relative offsets, it shows whether position ids follow the attention mask."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wpe.weight.mul_(50.0)
        model.lm_head.weight.mul_(30.0)
    return model


def logits_of(model, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=generator)
    with torch.no_grad():
        return model(input_ids=ids).logits


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def save_tiny_tokenizer(folder: Path):
    """A character-level tokenizer (ids < 128) with a chat template, saved beside a tiny model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "</s>", "<|user|>", "<|assistant|>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A tiny Llama with a tokenizer and chat template, for training and generation tests."""

    def make(root: Path) -> None:
        save_tiny_llama(root / "model")
        save_tiny_tokenizer(root / "model")

    return reusable(tmp_path_factory, "chat", make) / "model"


def _llama_cpp_permute(weight, heads: int):
    """llama.cpp stores q/k rows interleaved for its rope; transformers undoes this on load."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_tiny_gguf(model_folder: Path, path: Path, quantisation: str | None = None) -> Path:
    """Write a tiny Llama as a GGUF file the way llama.cpp's converter lays it out: F32, or with
    the seven projections of every block quantised (``quantisation``: "Q8_0", "Q4_1", ...) as the
    embedded model's file is; norms and the embeddings stay F32."""
    import gguf
    import numpy as np
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_folder)
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    tokens = ["<unk>", "<s>", "</s>", "a", "b", "ab"] + [f"x{i}" for i in range(c.vocab_size - 6)]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    block = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for name, tensor in model.state_dict().items():
        array = tensor.numpy().astype(np.float32)
        if name in top:
            writer.add_tensor(top[name], array)
            continue
        parts = name.split(".")
        inner = ".".join(parts[3:-1])
        if inner == "self_attn.q_proj":
            array = _llama_cpp_permute(array, c.num_attention_heads)
        elif inner == "self_attn.k_proj":
            array = _llama_cpp_permute(array, c.num_key_value_heads)
        if quantisation is not None and array.ndim == 2:
            kind = gguf.GGMLQuantizationType[quantisation]
            writer.add_tensor(
                f"blk.{parts[2]}.{block[inner]}.weight", gguf.quants.quantize(array, kind), raw_dtype=kind
            )
            continue
        writer.add_tensor(f"blk.{parts[2]}.{block[inner]}.weight", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ---- a small HoE bundle on the tiny chat model: 2 objectives, 2 extracted experts, 1 merge, 1 router

RECIPE = """
base: {base}
objectives: [helpful, harmless]
rank: 3
experts:
  - name: helpful
    anchor: {{helpful: 1}}
    finetuned: ft-helpful
  - name: harmless
    anchor: [0, 1]
    finetuned: ft-harmless
merges:
  - name: balanced
    experts: [helpful, harmless]
    method: linear
routers:
  - name: mostly-harmless
    anchor: [0.25, 0.75]
"""


@pytest.fixture(scope="session")
def recipe_dir(tiny_chat_model, tmp_path_factory) -> Path:
    def make(root: Path) -> None:
        plant_low_rank(tiny_chat_model, root / "ft-helpful", rank=3, seed=21, scale=0.3)
        plant_low_rank(tiny_chat_model, root / "ft-harmless", rank=3, seed=22, scale=0.3)
        (root / "recipe.yaml").write_text(RECIPE.format(base=tiny_chat_model))

    return reusable(tmp_path_factory, "recipe", make)


@pytest.fixture(scope="session")
def bundle_dir(recipe_dir, tmp_path_factory) -> Path:
    from hoe.pipeline.build import build_bundle

    return (
        reusable(
            tmp_path_factory,
            "bundle",
            lambda root: build_bundle(recipe_dir / "recipe.yaml", root / "b", progress=False),
        )
        / "b"
    )


@pytest.fixture(scope="module")
def tiny_hoe_model(bundle_dir):
    """The tiny bundle as a loaded HoEModel, once per test module."""
    from hoe.model.hoe_model import HoEModel

    return HoEModel.from_bundle(bundle_dir).eval()


def free_port() -> int:
    """A localhost port free right now: two-process tests with a fixed rendezvous port collide with
    anything else holding it (another test run on the same machine, a port still in TIME_WAIT)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def interrupt_at_call(monkeypatch, owner, name: str, call: int):
    """Make ``owner.name`` raise KeyboardInterrupt on its ``call``-th call, as a kill would.
    Returns a function that puts the original back."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, dying)
    return lambda: monkeypatch.setattr(owner, name, original)
