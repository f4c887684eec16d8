"""Fidelity of an expert to its fine-tune, and the demo's report table, on a tiny chat model."""

from __future__ import annotations

from conftest import plant_low_rank

from hoe.experts import ExtractSettings, extract_expert
from hoe.experts.fidelity import logit_fidelity
from hoe.pipeline.demo import summarise

PROMPTS = ["hello there", "what is 2+2?", "tell me a joke"]


def test_exact_expert_recovers_whole_shift(tiny_chat_model, tmp_path):
    plant_low_rank(tiny_chat_model, tmp_path / "ft", rank=3, scale=0.2)
    extract_expert(tiny_chat_model, tmp_path / "ft", tmp_path / "full", ExtractSettings(rank=3), progress=False)
    extract_expert(tiny_chat_model, tmp_path / "ft", tmp_path / "one", ExtractSettings(rank=1), progress=False)
    full = logit_fidelity(tiny_chat_model, tmp_path / "ft", tmp_path / "full", PROMPTS)
    partial = logit_fidelity(tiny_chat_model, tmp_path / "ft", tmp_path / "one", PROMPTS)
    assert full["kl_ft_base"] > 0 and full["tokens"] > 0
    assert full["shift_recovered"] > 0.999
    assert 0 < partial["shift_recovered"] < full["shift_recovered"]


def test_summary_table_groups_by_projection(tiny_base, tiny_planted, tmp_path):
    report = extract_expert(tiny_base, tiny_planted[0], tmp_path / "e", ExtractSettings(rank=2), progress=False)
    text = summarise(report)
    assert text.splitlines()[0].split() == ["projection", "modules", "rank", "energy", "kept", "rel.", "error"]
    assert any(line.startswith("q_proj") and line.split()[1:3] == ["2", "2"] for line in text.splitlines())
    assert text.splitlines()[-1].startswith("total: 14 modules")
