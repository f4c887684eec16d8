"""``hoe make-expert``: a single-objective aligned model of the base, for objectives that have
no off-the-shelf expert. RAFT (Dong et al. 2023): sample k responses per training prompt, keep
the best by the objective, fine-tune the whole model on the kept ones (a full fine-tune, so
task-SVD has real work to do afterwards). Candidates are sampled once per (base, prompts,
sampling settings) and shared by every objective; scores go through the shared cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoe.data import load_prompts
from hoe.errors import HoEError
from hoe.models.loading import cache_root
from hoe.rewards import ScoreCache, score_objectives
from hoe.rewards.scoring import check_objective_name
from hoe.training.sampling import SamplingSettings, sample_candidates
from hoe.training.sft import SFTSettings, supervised_finetune
from hoe.utils.io import check_output_dir

METHODS = ("raft",)
REPORT_NAME = "make_expert_report.json"


@dataclass
class MakeExpertSettings:
    objective: str
    method: str = "raft"
    prompts: str = "packaged:hh-helpful-sft"
    prompt_count: int = 96
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sft: SFTSettings = field(default_factory=lambda: SFTSettings(steps=24, batch_size=8, max_length=160, learning_rate=2e-5))

    @classmethod
    def from_options(cls, objective: str, *, method: str = "raft", prompts: str = "packaged:hh-helpful-sft", prompt_count: int = 96,
                     k: int = 4, max_new_tokens: int = 64, steps: int = 24, learning_rate: float = 2e-5) -> "MakeExpertSettings":
        """Settings from the flat options the CLI and recipes expose."""
        return cls(objective=objective, method=method, prompts=prompts, prompt_count=prompt_count,
                   sampling=SamplingSettings(k=k, max_new_tokens=max_new_tokens),
                   sft=SFTSettings(steps=steps, batch_size=8, max_length=160, learning_rate=learning_rate))

    def validate(self) -> None:
        if self.method not in METHODS:
            raise HoEError(f"unknown method '{self.method}' (available: {', '.join(METHODS)})")
        if self.prompt_count <= 0:
            raise HoEError(f"--prompt-count must be positive, got {self.prompt_count}")
        self.sampling.validate()
        self.sft.validate()


def make_expert(base: str, settings: MakeExpertSettings, out: str | Path, *, device: str = "cpu", overwrite: bool = False,
                progress: bool = True) -> dict:
    """Make the expert at ``out`` (a transformers folder with ``make_expert_report.json``)."""
    from hoe.rewards import get_scorer

    settings.validate()
    check_output_dir(out, overwrite)
    check_objective_name(settings.objective)
    get_scorer(settings.objective)  # a scorer that cannot load fails here, before any sampling
    prompts = load_prompts(settings.prompts, "train", limit=settings.prompt_count)
    candidates = sample_candidates(base, prompts, settings.sampling, device=device, progress=progress)
    k = settings.sampling.k
    flat_prompts = [row["prompt"] for row in candidates for _ in row["responses"]]
    flat_responses = [r for row in candidates for r in row["responses"]]
    scores = score_objectives([settings.objective], flat_prompts, flat_responses, cache=ScoreCache(cache_root() / "scores.sqlite"))[settings.objective]
    pairs, chosen_scores = [], []
    for index, row in enumerate(candidates):
        group = scores[index * k : (index + 1) * k]
        best = max(range(k), key=lambda i: group[i])
        if row["responses"][best].strip():
            pairs.append((row["prompt"], row["responses"][best]))
            chosen_scores.append(group[best])
    if not pairs:
        raise HoEError("every chosen response is empty: nothing to learn from")
    report = {
        "base": base, "settings": asdict(settings), "prompts": len(prompts), "pairs": len(pairs),
        "candidate_mean": round(sum(scores) / len(scores), 6), "chosen_mean": round(sum(chosen_scores) / len(chosen_scores), 6),
    }
    log = supervised_finetune(base, pairs, out, settings.sft, device=device, overwrite=overwrite, progress=progress,
                              extra_json={REPORT_NAME: report})
    return {**report, "final_loss": log["losses"][-1], "train_seconds": round(log["seconds"], 1)}
