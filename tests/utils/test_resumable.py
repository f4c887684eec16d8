"""Resumable batch outputs: a rerun under other settings is refused instead of mixing rows, and
two runs never write one output at once."""

from __future__ import annotations

import json

import pytest
from filelock import FileLock

from hoe.errors import HoEError
from hoe.utils.resumable import resumable_batches

REQUESTS = [{"prompt": f"p{i}"} for i in range(6)]


def answer_with(tag: str, die_after: int | None = None):
    def answer(index: int, batch: list[dict]) -> list[dict]:
        if die_after is not None and index >= die_after:
            raise KeyboardInterrupt
        return [{**row, "response": f"{tag}{index}"} for row in batch]

    return answer


def run(out, tag, settings, die_after=None):
    return resumable_batches(
        REQUESTS,
        answer_with(tag, die_after),
        batch_size=2,
        output=out,
        key_fields=("prompt",),
        progress=False,
        settings=settings,
    )


def test_a_rerun_under_other_settings_is_refused_and_the_same_settings_resume(tmp_path):
    out = tmp_path / "answers.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(out, "a", {"seed": 3, "options": {"max_new_tokens": 24}}, die_after=1)
    with pytest.raises(HoEError, match=r"was started with other settings \(options: .*24.* then, .*2.* now\)"):
        run(out, "b", {"seed": 3, "options": {"max_new_tokens": 2}})
    with pytest.raises(HoEError, match=r"\(seed: 3 then, 99 now\)"):
        run(out, "b", {"seed": 99, "options": {"max_new_tokens": 24}})
    rows = run(out, "c", {"seed": 3, "options": {"max_new_tokens": 24}})
    assert [r["response"] for r in rows] == ["a0", "a0", "c1", "c1", "c2", "c2"]  # the first batch kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl"]  # no partial, settings or lock left
    assert json.loads(out.read_text().splitlines()[0])["prompt"] == "p0"


def test_a_second_writer_of_the_same_output_gets_one_line(tmp_path):
    out = tmp_path / "answers.jsonl"
    with FileLock(f"{out}.lock"):  # another run holds it
        with pytest.raises(HoEError, match="another run is writing"):
            run(out, "a", {})
    assert not out.exists()
    assert len(run(out, "a", {})) == 6
