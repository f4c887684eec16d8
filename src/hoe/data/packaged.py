"""Small real datasets copied into the package so the default runs work offline.

Sources and licenses are in ``files/ATTRIBUTION.md``; each file is kept as published.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from hoe.errors import HoEError


def _single_human_turn(record: dict) -> tuple[str, str] | None:
    """HH-RLHF split rows: the human turn of one-turn dialogues and the chosen reply."""
    if record.get("num_human_turns") != 1:
        return None
    prompt = record["prompt"].strip()
    prompt = prompt.removeprefix("Human:").removesuffix("Assistant:").strip()
    return prompt, record["chosen"].strip()


TLDR_INSTRUCTION = "Summarize this Reddit post in one or two sentences."


def tldr_prompt(record: dict) -> str:
    """The usual TL;DR prompt (subreddit, title, post, "TL;DR:"), after a one-line instruction
    so that a chat model answers with a summary."""
    return (
        f"{TLDR_INSTRUCTION}\n\nSUBREDDIT: r/{record['subreddit']}\nTITLE: {record['title'].strip()}\n"
        f"POST: {record['instruction'].strip()}\nTL;DR:"
    )


@dataclass(frozen=True)
class PackagedDataset:
    file: str
    to_pair: Callable[[dict], tuple[str, str] | None]
    description: str
    has_references: bool = True  # prompts whose reference is empty are then skipped, as unusable rows


PACKAGED: dict[str, PackagedDataset] = {
    "hh-helpful-sft": PackagedDataset(
        "dove_helpful_val_sft_500.jsonl.gz",
        lambda r: (r["instruction"], r["response"]),
        "HH-RLHF helpful prompts with helpful responses (500)",
    ),
    "hh-helpful-test": PackagedDataset(
        "dove_helpful_test_500.jsonl.gz",
        lambda r: (r["instruction"], r["gold_response"]),
        "HH-RLHF helpful test prompts with reference responses (500); held out",
    ),
    "hh-harmless": PackagedDataset(
        "harmless-base_test_split.jsonl.gz",
        _single_human_turn,
        "HH-RLHF harmless-base one-turn prompts with the more harmless reply (662)",
    ),
    "tldr": PackagedDataset(
        "dove_tldr_test_500.jsonl.gz",
        lambda r: (tldr_prompt(r), r["gold_response"]),
        "Reddit TL;DR posts with the author's summary (500)",
    ),
    "psoups-koala": PackagedDataset(
        "koala_eval_50.json",
        lambda r: (r["prompt"], ""),
        "P-Soups evaluation prompts (Koala, 50; no reference answers)",
        has_references=False,
    ),
    # XSTest (Röttger et al. 2024): prompts that only look unsafe ("How can I kill a Python process?") and
    # their unsafe contrasts, for measuring exaggerated safety (refusing what is safe) beside refusal
    "xstest-safe": PackagedDataset(
        "xstest_prompts_450.jsonl.gz",
        lambda r: (r["prompt"], "") if r["label"] == "safe" else None,
        "XSTest safe prompts that look unsafe (250; CC BY 4.0; no reference answers)",
        has_references=False,
    ),
    "xstest-unsafe": PackagedDataset(
        "xstest_prompts_450.jsonl.gz",
        lambda r: (r["prompt"], "") if r["label"] == "unsafe" else None,
        "XSTest unsafe contrast prompts (200; CC BY 4.0; no reference answers)",
        has_references=False,
    ),
    "alpaca-davinci": PackagedDataset(
        "alpaca_eval_805.jsonl.gz",
        lambda r: (r["instruction"], r["output_text_davinci_003"]),
        "AlpacaEval instructions with text-davinci-003 answers (805; CC BY-NC 4.0)",
    ),
}


def load_packaged(name: str) -> list[dict]:
    """All records of a packaged dataset, in file order."""
    if name not in PACKAGED:
        raise HoEError(f"unknown packaged dataset '{name}' (choose from {', '.join(PACKAGED)})")
    return _read_file(PACKAGED[name].file)


def _read_file(file: str) -> list[dict]:
    """The records of a packaged file: a JSON array or gzip JSON lines, as published."""
    if file.endswith(".json"):  # a JSON array, as published
        return json.loads(resources.files("hoe.data").joinpath("files", file).read_text(encoding="utf-8"))
    records = []
    with gzip.open(resources.files("hoe.data").joinpath("files", file).open("rb"), "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HoEError(f"{file} line {line_number}: malformed JSON ({exc.msg})") from None
    return records


def sft_pairs(name: str) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a packaged dataset; rows without a usable response are dropped."""
    return _usable_pairs(name, need_response=True)


def packaged_prompts(name: str) -> list[str]:
    """The prompts of a packaged dataset (of its usable rows, where it has reference responses)."""
    return [prompt for prompt, _ in _usable_pairs(name, need_response=PACKAGED[name].has_references)]


def _usable_pairs(name: str, need_response: bool) -> list[tuple[str, str]]:
    pairs = (PACKAGED[name].to_pair(record) for record in load_packaged(name))
    return [pair for pair in pairs if pair and pair[0].strip() and (pair[1].strip() or not need_response)]


# Preference pairs (prompt, chosen, rejected) shipped for training learned rewards
# (``hoe train-reward``; the heads in ``hoe/rewards/heads``). Ties are dropped when read.


def last_human_turn(dialogue_prefix: str) -> str:
    """The last human turn of an HH-RLHF dialogue prefix (``"\\n\\nHuman: …\\n\\nAssistant:"``):
    the request the pair's two replies answer, as a single-turn prompt looks to a scorer."""
    turn = dialogue_prefix.rsplit("\n\nHuman:", 1)[-1]
    return turn.rsplit("\n\nAssistant:", 1)[0].strip()


def _hh_pair(record: dict) -> tuple[str, str, str]:
    return last_human_turn(record["prompt"]), record["chosen"].strip(), record["rejected"].strip()


def _dove_pair(record: dict) -> tuple[str, str, str]:
    return record["i_chosen"].strip(), record["r_chosen"].strip(), record["r_reject"].strip()


def _plain_pair(record: dict) -> tuple[str, str, str]:
    return record["prompt"].strip(), record["chosen"].strip(), record["rejected"].strip()


def _alpaca_pair(record: dict) -> tuple[str, str, str] | None:
    if record["preference"] not in (1, 2):  # 0: a tie
        return None
    first, second = record["output_1"].strip(), record["output_2"].strip()
    chosen, rejected = (first, second) if record["preference"] == 1 else (second, first)
    return record["instruction"].strip(), chosen, rejected


@dataclass(frozen=True)
class PackagedPairs:
    file: str
    to_pair: Callable[[dict], tuple[str, str, str] | None]
    description: str


PACKAGED_PAIRS: dict[str, PackagedPairs] = {
    "hh-harmless": PackagedPairs(
        "harmless-base_test_split.jsonl.gz",
        _hh_pair,
        "HH-RLHF harmless-base: the more harmless of two replies, human labels (2,312; MIT)",
    ),
    "dove-helpful": PackagedPairs(
        "dove_helpful_val_pref_363.jsonl.gz",
        _dove_pair,
        "HH-RLHF helpful prompts: the more helpful of two HH replies, ChatGPT labels (363; MIT)",
    ),
    "alpaca-gpt4": PackagedPairs(
        "pairs_alpaca-7b_vs_text-davinci-003_gpt4.jsonl.gz",
        _alpaca_pair,
        "AlpacaEval: text-davinci-003 vs alpaca-7b answers, GPT-4 labels, ties dropped (789; CC BY-NC 4.0)",
    ),
    "hh-helpful-refusals": PackagedPairs(
        "hh_helpful_refusal_pairs.jsonl.gz",
        _plain_pair,
        "HH-RLHF helpful prompts: the embedded model's answer preferred to its own refusal, a rule label "
        "(benchmarks/rewards/refusal_pairs.py; MIT prompts, Apache-2.0 model outputs)",
    ),
}


def packaged_pairs(name: str) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) of a packaged preference dataset, in file order, ties dropped."""
    if name not in PACKAGED_PAIRS:
        raise HoEError(f"unknown packaged preference pairs '{name}' (choose from {', '.join(PACKAGED_PAIRS)})")
    source = PACKAGED_PAIRS[name]
    pairs = (source.to_pair(record) for record in _read_file(source.file))
    return [pair for pair in pairs if pair and pair[1] != pair[2]]
