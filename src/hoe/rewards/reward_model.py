"""Transformers sequence-classification reward models, with presets for the models this field
uses and their quirks (method doc, "Experiments").

Each preset: the input the model reads → the score taken.

- ``scalar``: the model's chat template over (prompt, response), else ``prompt + "\\n" + response``
  → logit 0 of a 1-label head.
- ``hh``: ``"\\n\\nHuman: {prompt}\\n\\nAssistant: {response}"`` (Ray2333 gpt2-large helpful/harmless) → logit 0.
- ``two-class``: the response → logit 1 of a 2-label head (e.g. humor-no-humor).
- ``summary``: ``response + bos + post`` (Tristan/gpt2_reward_summarization) → logit 0.
- ``faithful``: the pair (post, summary) (CogComp/bart-faithful-summary-detector) → the logit of label ``FAITHFUL``.
- ``pair``: the pair (prompt, response) (OpenAssistant deberta reward models) → logit 0.
- ``armo:DIM``: the chat template (RLHFlow/ArmoRM-Llama3-8B-v0.1, ``trust_remote_code``) → reward dimension DIM:
  an index, or a HelpSteer name (helpfulness, correctness, coherence, complexity, verbosity = 0–4).
- ``beaver``: ``"BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"`` (PKU-Alignment
  beaver-7b-v1.0-reward; safe-rlhf's ``score_head`` read as a 1-label head) → the score at the last token.
- ``beaver-cost``: as ``beaver`` (beaver-7b-v1.0-cost) → minus the cost, so higher is safer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from hoe.errors import HoEError
from hoe.rewards.base import batched

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    labels: int | None  # the head size the preset needs (None: any, the label is looked up)
    max_length: int = 1024


PRESETS = {
    p.name: p
    for p in (
        Preset("scalar", 1),
        Preset("hh", 1),
        Preset("two-class", 2),
        Preset("summary", 1),
        Preset("faithful", None),
        Preset("pair", 1),
        Preset("armo", None, 4096),
        Preset("beaver", 1, 2048),
        Preset("beaver-cost", 1, 2048),
    )
}
ARMO_HELPSTEER = [
    "helpfulness",
    "correctness",
    "coherence",
    "complexity",
    "verbosity",
]  # ArmoRM's reward dimensions 0–4
BEAVER_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"

# hub names -> preset, for the reward models of the paper's settings
KNOWN_MODELS = {
    "Ray2333/gpt2-large-helpful-reward_model": "hh",
    "Ray2333/gpt2-large-harmless-reward_model": "hh",
    "mohameddhiab/humor-no-humor": "two-class",
    "Tristan/gpt2_reward_summarization": "summary",
    "CogComp/bart-faithful-summary-detector": "faithful",
    "OpenAssistant/reward-model-deberta-v3-large-v2": "pair",
    "PKU-Alignment/beaver-7b-v1.0-reward": "beaver",
    "PKU-Alignment/beaver-7b-v1.0-cost": "beaver-cost",
    "RLHFlow/ArmoRM-Llama3-8B-v0.1": "armo:helpfulness",
}


def armo_dimension(preset: str) -> int:
    """The reward dimension of an ``armo:DIM`` preset (index or HelpSteer name)."""
    text = preset.partition(":")[2] or "0"
    if text in ARMO_HELPSTEER:
        return ARMO_HELPSTEER.index(text)
    if text.isdigit():
        return int(text)
    raise HoEError(f"ArmoRM dimension '{text}' is neither an index nor one of {', '.join(ARMO_HELPSTEER)}")


class RewardModelScorer:
    """A sequence-classification reward model by hub name or local path."""

    def __init__(
        self,
        reference: str,
        preset: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        preset = preset or KNOWN_MODELS.get(reference, "scalar")
        family = preset.partition(":")[0]
        if family not in PRESETS or (":" in preset and family != "armo"):
            raise HoEError(
                f"unknown reward-model preset '{preset}' (choose from {', '.join(PRESETS)}; armo takes :DIM)"
            )
        self.preset, self.device, self.batch_size = PRESETS[family], device, batch_size
        self.dimension = armo_dimension(preset) if family == "armo" else None
        path = Path(reference).expanduser()
        if not path.exists() and (reference.startswith((".", "/", "~")) or reference.count("/") != 1):
            raise HoEError(f"reward model not found: '{reference}'")
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(reference, trust_remote_code=trust_remote_code)
            extra = (
                {"num_labels": 1, "key_mapping": {"^score_head": "score"}} if family.startswith("beaver") else {}
            )  # safe-rlhf's head
            self.model = (
                AutoModelForSequenceClassification.from_pretrained(
                    reference, trust_remote_code=trust_remote_code, **extra
                )
                .to(device)
                .eval()
            )
        except OSError as exc:
            raise HoEError(f"could not load reward model '{reference}': {str(exc).splitlines()[0]}") from None
        labels = self.model.config.num_labels
        if self.preset.labels is not None and labels != self.preset.labels:
            raise HoEError(
                f"reward model '{reference}' has a {labels}-label head but preset '{preset}' needs {self.preset.labels}"
            )
        self.label = 1 if preset == "two-class" else 0
        self.sign = -1.0 if family == "beaver-cost" else 1.0
        if self.dimension is not None:
            self.label = self.dimension
            if labels <= self.dimension and not getattr(self.model.config, "num_objectives", 0) > self.dimension:
                raise HoEError(
                    f"reward model '{reference}' has {labels} outputs; ArmoRM dimension {self.dimension} is out of "
                    "range"
                )
        if preset == "faithful":
            names = {str(v).upper(): int(k) for k, v in self.model.config.id2label.items()}
            if "FAITHFUL" not in names:
                raise HoEError(f"reward model '{reference}' has no FAITHFUL label (labels: {', '.join(names)})")
            self.label = names["FAITHFUL"]
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.key = f"rm/{reference}/{preset}"
        self.truncated = 0  # pairs cut to fit the model's context

    def texts(self, prompts, responses) -> tuple[list[str], list[str] | None]:
        """The model's input texts (and second segments for pair presets) under the preset."""
        name = self.preset.name
        if name == "hh":
            return [f"\n\nHuman: {p}\n\nAssistant: {r}" for p, r in zip(prompts, responses)], None
        if name == "two-class":
            return list(responses), None
        if name == "summary":
            bos = self.tokenizer.bos_token or ""
            return [f"{r}{bos}{p}" for p, r in zip(prompts, responses)], None
        if name in ("faithful", "pair"):
            return list(prompts), list(responses)
        if name.startswith("beaver"):
            return [BEAVER_TEMPLATE.format(prompt=p, response=r) for p, r in zip(prompts, responses)], None
        if self.tokenizer.chat_template:
            chats = [
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                for p, r in zip(prompts, responses)
            ]
            return [self.tokenizer.apply_chat_template(c, tokenize=False) for c in chats], None
        return [f"{p}\n{r}" for p, r in zip(prompts, responses)], None

    @torch.no_grad()
    def score(self, prompts, responses) -> list[float]:
        first, second = self.texts(prompts, responses)
        limit = min(self.preset.max_length, getattr(self.tokenizer, "model_max_length", 10**9) or 10**9)
        scores: list[float] = []
        for start, chunk in batched(first, self.batch_size):
            pair = None if second is None else second[start : start + len(chunk)]
            untruncated = self.tokenizer(chunk, pair, add_special_tokens=True)["input_ids"]
            cut = sum(len(ids) > limit for ids in untruncated)
            if cut:
                log.warning("%s: %d input(s) longer than %d tokens were truncated", self.key, cut, limit)
            self.truncated += cut
            batch = self.tokenizer(chunk, pair, return_tensors="pt", padding=True, truncation=True, max_length=limit)
            out = self.model(**{k: v.to(self.device) for k, v in batch.items()})
            values = (
                out.rewards if self.dimension is not None and hasattr(out, "rewards") else out.logits
            )  # ArmoRM: per-dimension rewards
            scores += [self.sign * float(v) for v in values[:, self.label]]
        return scores
