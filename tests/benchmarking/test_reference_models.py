"""The reference fine-tunes that the extract, merge and inference benchmarks start from: made once per
(base, data, settings), then found in the cache. The fine-tune itself is replaced by a stub that writes
its log: what is tested is the cache key and the reuse, not SFT (tested in tests/training)."""

from __future__ import annotations

import json

from hoe.benchmarking import reference_models
from hoe.training.settings import SFTSettings


def test_a_reference_fine_tune_is_made_once_per_settings(tmp_path, monkeypatch):
    made = []

    def fake_finetune(base, pairs, out, settings, progress=True):
        made.append((base, out.name, settings.steps))
        out.mkdir(parents=True)
        (out / "sft_log.json").write_text(json.dumps({"steps": settings.steps}))

    monkeypatch.setattr(reference_models, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(reference_models, "supervised_finetune", fake_finetune)
    monkeypatch.setattr(reference_models, "sft_pairs", lambda name: [("prompt", name)])
    first = reference_models.reference_finetune("harmless", base="some-base")
    again = reference_models.reference_finetune("harmless", base="some-base")
    other = reference_models.reference_finetune("harmless", base="some-base", settings=SFTSettings(steps=3))
    assert first == again and first.parent == tmp_path / "finetunes" and first.name.startswith("harmless-sft-")
    assert other != first and [m[2] for m in made] == [30, 3]
