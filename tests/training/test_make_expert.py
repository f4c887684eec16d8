"""Candidate sampling (cached, resumable), conflict measurement and RAFT on the tiny chat model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import interrupt_at_call

from hoe.errors import HoEError
from hoe.rewards.conflict import conflict_table, within_prompt_correlation
from hoe.training.make_expert import MakeExpertSettings, dpo_precision, make_expert
from hoe.training.sampling import sample_candidates
from hoe.training.settings import SamplingSettings, parse_floor

PROMPTS = ["hello", "what is up", "tell me a story", "how are you", "name a fruit"]
SETTINGS = SamplingSettings(k=3, max_new_tokens=6, batch_prompts=2)


TINY_JOB = {"max_new_tokens": 6, "batch_prompts": 2, "steps": 1, "batch_size": 2, "learning_rate": 1e-3}


def response_length(prompts, responses):
    return [float(len(r)) for r in responses]


def record_finetune(monkeypatch) -> list[tuple[str, str]]:
    """The (prompt, response) pairs make_expert hands to its supervised fine-tune, which still runs."""
    import hoe.training.make_expert as job

    learnt, real_finetune = [], job.supervised_finetune

    def finetune(base, pairs, *args, **kwargs):
        learnt.extend(pairs)
        return real_finetune(base, pairs, *args, **kwargs)

    monkeypatch.setattr(job, "supervised_finetune", finetune)
    return learnt


def test_sampling_is_cached_and_resumes_identically(tiny_chat_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "whole"))
    whole = sample_candidates(str(tiny_chat_model), PROMPTS, SETTINGS, progress=False)
    assert [len(r["responses"]) for r in whole] == [3] * 5
    assert sample_candidates(str(tiny_chat_model), PROMPTS, SETTINGS, progress=False) == whole  # from the cache

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "resumed"))
    from transformers import LlamaForCausalLM

    restore = interrupt_at_call(monkeypatch, LlamaForCausalLM, "generate", 2)
    with pytest.raises(KeyboardInterrupt):
        sample_candidates(str(tiny_chat_model), PROMPTS, SETTINGS, progress=False)
    restore()
    assert sample_candidates(str(tiny_chat_model), PROMPTS, SETTINGS, progress=False) == whole


def test_within_prompt_correlation():
    mean, error, count = within_prompt_correlation([[1, 2, 3], [3, 2, 1], [5, 5, 5]], [[3, 2, 1], [1, 2, 3], [1, 2, 3]])
    assert mean == pytest.approx(-1.0) and count == 2  # the all-tied prompt is skipped
    table = conflict_table({"a": [[1, 2, 3], [1, 2, 3]], "b": [[3, 2, 1], [3, 1, 2]], "c": [[1, 2, 3], [1, 3, 2]]})
    assert table[0]["pair"] in (["a", "b"], ["b", "c"]) and table[0]["spearman"] < 0


def test_raft_fine_tunes_on_the_best_responses(tiny_chat_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    settings = MakeExpertSettings(
        objective=f"py:{__name__}:response_length",
        prompt_count=4,
        k=3,
        max_new_tokens=6,
        batch_prompts=2,
        steps=2,
        batch_size=2,
        max_length=160,
        learning_rate=1e-3,
    )
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    assert report["pairs"] == 4 and report["chosen_mean"] >= report["candidate_mean"]
    saved = json.loads((tmp_path / "expert" / "make_expert_report.json").read_text())
    assert saved["chosen_mean"] == report["chosen_mean"] and (tmp_path / "expert" / "model.safetensors").is_file()


def test_distill_samples_with_the_instruction_and_learns_the_bare_prompt(tiny_chat_model, tmp_path, monkeypatch):
    """The candidates are sampled with the instruction before each prompt (their own cache entry),
    scored and learnt against the bare prompt, so the expert is never shown the instruction."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    import hoe.training.make_expert as job

    sampled, scored = [], []
    real_sample = job.sample_candidates
    monkeypatch.setattr(
        job,
        "sample_candidates",
        lambda base, prompts, *a, **kw: sampled.extend(prompts) or real_sample(base, prompts, *a, **kw),
    )

    def scores(objectives, prompts, responses, **kwargs):
        scored.extend(prompts)
        return {objectives[0]: response_length(prompts, responses)}

    learnt = record_finetune(monkeypatch)
    monkeypatch.setattr(job, "score_objectives", scores)
    settings = MakeExpertSettings.create(
        objective=f"py:{__name__}:response_length",
        method="distill",
        instruction="Answer like a pirate.",
        prompt_count=4,
        k=2,
        **TINY_JOB,
    )
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    bare = job.load_prompts(settings.prompts, "train", limit=4)
    assert sampled == [f"Answer like a pirate.\n\n{p}" for p in bare]
    assert set(scored) == set(bare) and [prompt for prompt, _ in learnt] == bare and report["pairs"] == 4
    saved = json.loads((tmp_path / "expert" / "make_expert_report.json").read_text())
    assert saved["settings"]["instruction"] == "Answer like a pirate." and saved["settings"]["method"] == "distill"
    assert settings.cache_fields()["instruction"] == "Answer like a pirate."


def _kept_prompts_job(**values) -> MakeExpertSettings:
    """A tiny job on 4 red-team prompts, keeping 3 benign ones, scored by length."""
    return MakeExpertSettings.create(
        objective=f"py:{__name__}:response_length",
        prompts="packaged:hh-harmless",
        prompt_count=4,
        keep_prompts="packaged:hh-helpful-sft",
        keep_count=3,
        k=3,
        **TINY_JOB,
        **values,
    )


def test_keep_prompts_are_learnt_with_the_bases_own_first_answer(tiny_chat_model, tmp_path, monkeypatch):
    """Kept prompts join the selected pairs with the base's first sampled answer (not the objective's
    best), after the objective's prompts were selected on; the report counts them."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    import hoe.training.make_expert as job

    learnt = record_finetune(monkeypatch)
    settings = _kept_prompts_job()
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    kept = job.load_prompts("packaged:hh-helpful-sft", "train", limit=3)
    sampled = sample_candidates(str(tiny_chat_model), kept, settings.sampling, progress=False)  # cached
    first = [(row["prompt"], row["responses"][0]) for row in sampled if row["responses"][0].strip()]
    assert learnt[report["pairs"] :] == first and report["kept"] == len(first) > 0
    targets = job.load_prompts("packaged:hh-harmless", "train", limit=4)
    assert [prompt for prompt, _ in learnt[: report["pairs"]]] == targets[: report["pairs"]]
    assert settings.cache_fields()["keep_prompts"] == "packaged:hh-helpful-sft"
    assert "keep_prompts" not in MakeExpertSettings(objective="civility").cache_fields()  # old cache keys kept
    assert f"beside {report['kept']} of the base's own answers" in job.make_expert_summary(report, "x")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"method": "ppo", "keep_prompts": "packaged:hh-harmless"}, "'raft', 'distill' and 'dpo' only, not 'ppo'"),
        ({"keep_count": 4}, "keep_count needs keep_prompts"),
        ({"keep_prompts": "packaged:hh-helpful-sft"}, "keep_prompts must differ from prompts"),
        ({"keep_prompts": "packaged:nope"}, "unknown packaged dataset 'nope'"),
        (
            {"prompts": "packaged:hh-harmless+packaged:hh-helpful-sft", "keep_prompts": "packaged:hh-helpful-sft"},
            r"^\d+ of the kept prompts are also training prompts \(first: .*\); keep_prompts must not overlap prompts$",
        ),
        (
            {"method": "rlhf"},
            r"method \(--method\): unknown method 'rlhf' \(available: raft, dpo, ppo, distill\), got 'rlhf'",
        ),
        ({"method": "distill"}, "make-expert settings: method 'distill' needs an instruction"),
        ({"method": "distill", "instruction": "   "}, "method 'distill' needs an instruction"),
        ({"instruction": "Be brief."}, "an instruction is used by methods 'distill' and 'dpo' only, not 'raft'"),
        ({"method": "ppo", "instruction": "Be brief."}, "methods 'distill' and 'dpo' only, not 'ppo'"),
        ({"method": "dpo", "instruction": "  "}, "an instruction must not be blank"),
        ({"objective": "wit"}, "unknown objective 'wit'"),
        ({"round_steps": [4, 4]}, "round_steps are rounds of iterated DPO: method 'dpo' only, not 'raft'"),
        ({"method": "dpo", "round_steps": [4, 0]}, r"every round needs a positive number of steps, got \[4, 0\]"),
        ({"method": "dpo", "round_steps": [4]}, r"round_steps \(--round-steps\): list should have at least 2 items"),
        ({"method": "dpo", "round_steps": [4, 4], "lora_rank": 8}, "each round's LoRA would hold only its own round"),
        ({"k": 1}, r"k \(--k\): input should be greater than or equal to 2, got 1"),
        ({"prompt_count": 0}, r"prompt_count \(--prompt-count\): input should be greater than 0, got 0"),
        ({"lora_rank": 0}, r"lora_rank \(--lora-rank\): input should be greater than 0, got 0"),
        ({"top_p": 1.5}, r"top_p \(--top-p\): input should be less than or equal to 1"),
        ({"epochs": 3}, r"epochs \(--epochs\): extra inputs are not permitted$"),
        ({"method": "dpo", "precision": "fp16"}, r"precision \(--precision\): input should be 'auto', 'float32' or"),
    ],
)
def test_bad_settings_fail_before_sampling(tiny_chat_model, tmp_path, values, message):
    """One line naming the field as a recipe key and as a CLI flag, before anything is sampled."""
    with pytest.raises(HoEError, match=message):
        settings = MakeExpertSettings.create(**{"objective": "civility", **values})
        make_expert(str(tiny_chat_model), settings, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_learning_rate_defaults_by_what_trains():
    """A recipe and the CLI build the same model, so a LoRA or PPO expert trains at 1e-4 from both
    (a recipe-made one once trained at 2e-5), a full fine-tune at 2e-5, and a set rate wins."""
    assert MakeExpertSettings(objective="civility").sft.learning_rate == 2e-5
    assert MakeExpertSettings(objective="civility", lora_rank=8).sft.learning_rate == 1e-4
    assert MakeExpertSettings(objective="civility", method="ppo").sft.learning_rate == 1e-4
    assert MakeExpertSettings(objective="civility", method="ppo").trained_lora_rank == 16
    assert MakeExpertSettings(objective="civility", learning_rate=3e-4, lora_rank=8).sft.learning_rate == 3e-4
    # the cache key of a made model is unchanged for full fine-tunes (their rate was and is 2e-5)
    assert MakeExpertSettings(objective="civility").cache_fields() == {
        "objective": "civility",
        "method": "raft",
        "prompts": "packaged:hh-helpful-sft",
        "prompt_count": 96,
        "k": 4,
        "max_new_tokens": 64,
        "steps": 24,
        "learning_rate": 2e-5,
        "beta": 0.1,
    }


def _dpo_settings(steps: int = 3) -> MakeExpertSettings:
    return MakeExpertSettings(
        objective=f"py:{__name__}:response_length",
        method="dpo",
        prompt_count=4,
        k=3,
        max_new_tokens=6,
        batch_prompts=2,
        steps=steps,
        batch_size=2,
        max_length=64,
        learning_rate=1e-3,
        save_every=1,
    )


def test_dpo_trains_on_best_versus_worst_and_resumes(tiny_chat_model, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from trl import DPOTrainer

    from hoe.checkpoints import CheckpointTensors

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    report = make_expert(str(tiny_chat_model), _dpo_settings(), tmp_path / "whole", progress=False)
    assert report["pairs"] > 0 and report["mean_margin"] > 0 and report["resumed_from"] is None
    assert report["precision"] == "float32"  # not TRL's default bf16 autocast, 11x slower on an AVX2 CPU
    assert (tmp_path / "whole" / "make_expert_report.json").is_file() and not (tmp_path / "whole.partial").exists()

    restore = interrupt_at_call(monkeypatch, DPOTrainer, "training_step", 3)
    with pytest.raises(KeyboardInterrupt):
        make_expert(str(tiny_chat_model), _dpo_settings(), tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.partial").is_dir()
    restore()
    resumed = make_expert(str(tiny_chat_model), _dpo_settings(), tmp_path / "resumed", progress=False)
    assert resumed["resumed_from"] and resumed["resumed_from"].endswith("checkpoint-2")
    whole, again = CheckpointTensors(tmp_path / "whole"), CheckpointTensors(tmp_path / "resumed")
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(again.get(name), whole.get(name), rtol=1e-4, atol=1e-5)


def test_dpo_progress_shows_a_bar_not_a_dict_of_metrics_per_step(tiny_chat_model, tmp_path, monkeypatch, capsys):
    pytest.importorskip("trl")
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    make_expert(str(tiny_chat_model), _dpo_settings(steps=2), tmp_path / "expert", progress=True)
    printed = capsys.readouterr()
    assert "'grad_norm'" not in printed.out + printed.err and "loss=" in printed.err
    assert len(json.loads((tmp_path / "expert" / "dpo_log.json").read_text())["history"]) == 2


def test_dpo_trains_in_float32_on_the_cpu_unless_bf16_is_asked_for():
    """auto (the default) is float32 on every CPU, whatever TRL's default; bf16 is autocast, float32 is float32."""
    assert dpo_precision("cpu") == dpo_precision("cpu", "float32") == {"bf16": False, "fp16": False}
    assert dpo_precision("cpu", "bf16") == {"bf16": True, "fp16": False}
    pytest.importorskip("trl")
    from trl import DPOConfig

    config = DPOConfig(output_dir="unused", use_cpu=True, report_to=[], **dpo_precision("cpu"))
    assert not config.bf16 and not config.fp16 and config.mixed_precision == "no"


def test_bf16_on_a_cpu_without_amx_is_one_line_before_anything_loads(tiny_chat_model, tmp_path, monkeypatch):
    from hoe.training import make_expert as module

    monkeypatch.setattr(module, "native_bf16", lambda device: False)
    monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    settings = _dpo_settings().model_copy(update={"precision": "bf16"})
    with pytest.raises(HoEError, match=r"^precision bf16: this CPU has no AMX, so every bf16 matmul would be emulated"):
        make_expert(str(tiny_chat_model), settings, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_bf16_where_the_cpu_has_it_trains_under_autocast_and_says_so(tiny_chat_model, tmp_path, monkeypatch):
    """The tiny model in bf16 autocast (emulated here if the CPU lacks AMX: tiny, so still quick); the report
    records the precision, and precision other than auto is part of the cache key and the bundle fingerprint."""
    pytest.importorskip("trl")
    from hoe.training import make_expert as module

    monkeypatch.setattr(module, "native_bf16", lambda device: True)
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    settings = _dpo_settings(steps=2).model_copy(update={"precision": "bf16"})
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    assert report["precision"] == "bf16"
    assert settings.cache_fields()["precision"] == "bf16" and settings.fingerprint_fields()["precision"] == "bf16"
    assert "precision" not in _dpo_settings().cache_fields() and "precision" not in _dpo_settings().fingerprint_fields()
    with pytest.raises(ValueError, match="precision sets DPO's training precision: method 'dpo' only, not 'raft'"):
        MakeExpertSettings(objective="civility", precision="float32")


def test_dpo_with_an_sft_weight_adds_the_chosen_answers_nll_to_dpos_loss(tiny_chat_model, tmp_path, monkeypatch):
    """At the first step the policy is its reference, so DPO's loss is log 2 exactly; with --sft-weight the
    logged loss is that plus the weighted NLL of the chosen answers, and the trained weights differ."""
    pytest.importorskip("trl")
    from hoe.checkpoints import CheckpointTensors

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    plain = make_expert(str(tiny_chat_model), _dpo_settings(steps=2), tmp_path / "plain", progress=False)
    weighted_settings = _dpo_settings(steps=2).model_copy(update={"sft_weight": 1.0})
    weighted = make_expert(str(tiny_chat_model), weighted_settings, tmp_path / "weighted", progress=False)
    first = [
        json.loads((tmp_path / name / "dpo_log.json").read_text())["history"][0]["loss"]
        for name in ("plain", "weighted")
    ]
    assert first[0] == pytest.approx(math.log(2), abs=1e-3)
    assert first[1] > first[0] + 0.5  # the tiny model's NLL per token is several nats
    assert plain["pairs"] == weighted["pairs"]
    name = "model.layers.0.self_attn.q_proj.weight"
    a, b = CheckpointTensors(tmp_path / "plain").get(name), CheckpointTensors(tmp_path / "weighted").get(name)
    assert not torch.allclose(a, b)


def test_sft_weight_is_dpos_alone_and_leaves_old_cache_keys_and_bundle_fingerprints_alone():
    with pytest.raises(ValueError, match="method 'dpo' only"):
        MakeExpertSettings(objective="civility", method="raft", sft_weight=1.0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        MakeExpertSettings(objective="civility", method="dpo", sft_weight=-1.0)
    plain = MakeExpertSettings(objective="civility", method="dpo")
    assert "sft_weight" not in plain.cache_fields() and "sft_weight" not in plain.fingerprint_fields()
    weighted = plain.model_copy(update={"sft_weight": 0.5})
    assert weighted.cache_fields()["sft_weight"] == 0.5 and weighted.fingerprint_fields()["sft_weight"] == 0.5


def test_ppo_makes_a_merged_lora_expert_and_resumes(tiny_chat_model, tmp_path, monkeypatch):
    """PPO on a LoRA for one objective; a killed run resumes to the same weights."""
    from conftest import interrupt_at_call
    from safetensors.torch import load_file

    from hoe.rl import trainer as trainer_module

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    settings = MakeExpertSettings(
        objective="concision",
        method="ppo",
        prompts="packaged:hh-helpful-sft",
        prompt_count=8,
        max_new_tokens=4,
        steps=3,
        batch_size=4,
        save_every=1,
    )
    whole = make_expert(str(tiny_chat_model), settings, tmp_path / "whole", progress=False)
    assert whole["method"] == "ppo" and (tmp_path / "whole" / "ppo_curve.csv").read_text().count("\n") == 4
    restore = interrupt_at_call(monkeypatch, trainer_module.Trainer, "train_step", 3)
    with pytest.raises(KeyboardInterrupt):
        make_expert(str(tiny_chat_model), settings, tmp_path / "resumed", progress=False)
    restore()
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.partial").is_dir()
    make_expert(str(tiny_chat_model), settings, tmp_path / "resumed", progress=False)
    a, b = (
        load_file(str(tmp_path / "whole" / "model.safetensors")),
        load_file(str(tmp_path / "resumed" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = load_file(str(tiny_chat_model / "model.safetensors"))
    assert any(
        not torch.equal(a[k], base[k]) for k in a if "q_proj" in k
    )  # the LoRA learned something and was merged in


@pytest.mark.parametrize("method", ["raft", "dpo"])
def test_lora_experts_keep_their_peft_adapter(tiny_chat_model, tmp_path, monkeypatch, method):
    """--lora: the folder holds the merged model and adapter/, whose delta is merged − base."""
    if method == "dpo":
        pytest.importorskip("trl")
    from hoe.checkpoints import CheckpointTensors
    from hoe.experts.lora import read_lora

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    settings = MakeExpertSettings(
        objective=f"py:{__name__}:response_length",
        method=method,
        prompts="packaged:hh-helpful-sft",
        prompt_count=4,
        k=3,
        max_new_tokens=6,
        steps=3,
        learning_rate=1e-2,
        lora_rank=2,
        batch_size=2,
    )
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    assert report["settings"]["lora_rank"] == 2
    adapter = read_lora(tmp_path / "expert" / "adapter")
    name = "model.layers.1.mlp.down_proj"
    base, merged = CheckpointTensors(tiny_chat_model), CheckpointTensors(tmp_path / "expert")
    assert adapter.modules[name].rank == 2 and adapter.modules[name].delta().abs().max() > 0
    torch.testing.assert_close(
        merged.get(f"{name}.weight") - base.get(f"{name}.weight"), adapter.modules[name].delta(), rtol=1e-3, atol=1e-5
    )


def _group(prompt: str, responses: list[str], scores: list[float]) -> tuple[dict, list[float]]:
    return {"prompt": prompt, "responses": responses}, scores


def test_preference_pairs_take_the_best_chosen_against_the_worst_rejected():
    """Best versus worst within one set of groups, or across two (an instruction's answers against the
    bare ones); ties, an empty best answer and identical texts give no pair."""
    from hoe.training.make_expert import preference_pairs

    instructed = [_group("p1", ["a", "bb", "c"], [1.0, 3.0, 2.0]), _group("p2", ["x", "y"], [1.0, 1.0])]
    bare = [_group("p1", ["d", "e", "f"], [2.5, 0.5, 4.0]), _group("p2", ["z", "w"], [0.0, 2.0])]
    within = preference_pairs(instructed)
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in within] == [("bb", "a", 2.0)]
    across = preference_pairs(instructed, bare)
    assert [(r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in across] == [
        ("p1", "bb", "e"),
        ("p2", "y", "z"),  # the last of tied best answers (as before this change), against the bare worst
    ]
    assert [r["margin"] for r in across] == [2.5, 1.0] and [r["chosen_score"] for r in across] == [3.0, 1.0]
    assert preference_pairs([_group("p", [" ", "a"], [2.0, 1.0])]) == []  # the best answer is empty
    assert preference_pairs([_group("p", ["a", "a"], [2.0, 1.0])]) == []  # the same text on both sides


def test_kept_pairs_prefer_the_bases_own_answer_to_the_objectives_pick():
    """On a kept prompt the base's first answer is chosen over the answer the objective scores best,
    only where the objective does prefer that one (a positive margin: the pull to resist)."""
    from hoe.training.make_expert import kept_pairs

    own = [_group("k1", ["own1", "o"], [1.0, 0.0]), _group("k2", ["own2", "o"], [5.0, 0.0])]
    pulled = [_group("k1", ["r1", "refuse"], [2.0, 4.0]), _group("k2", ["r2", "r3"], [3.0, 4.0])]
    rows = kept_pairs(own, pulled)
    assert len(rows) == 1  # on k2 the base's own answer already scores higher: nothing to resist
    row = rows[0]
    assert (row["prompt"][0]["content"], row["chosen"][0]["content"], row["rejected"][0]["content"]) == (
        "k1",
        "own1",
        "refuse",
    )
    assert row["margin"] == 3.0 and row["chosen_score"] == 1.0


def test_dpo_with_an_instruction_and_kept_prompts_trains_on_contrastive_and_kept_pairs(
    tiny_chat_model, tmp_path, monkeypatch
):
    """With an instruction, DPO prefers the best answer sampled with it to the worst sampled without it
    (both judged as answers to the bare prompt); on kept prompts the base's own first bare answer is
    preferred to the best instructed one, where the objective prefers that one. Every pair reaches
    the trainer, the report counts both kinds, and the prompts are always bare."""
    pytest.importorskip("trl")
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    import hoe.training.make_expert as job

    trained = {}

    def fake_dpo(base, rows, settings, out, **kwargs):  # the trainer itself is covered above
        trained.update(rows)
        return {**kwargs["report"], "pairs": len(rows["training"]), "kept": len(rows["kept"]), "chosen_mean": 1.0}

    monkeypatch.setattr(job, "_dpo", fake_dpo)
    instruction = "Answer at length."
    settings = _kept_prompts_job(method="dpo", instruction=instruction)
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    model = str(tiny_chat_model)

    def sampled(spec, count, with_instruction):  # from the cache the job filled
        prompts = job.load_prompts(spec, "train", limit=count)
        rows = sample_candidates(model, job.instructed(prompts, with_instruction), settings.sampling, progress=False)
        return prompts, [row["responses"] for row in rows]

    prompts, instructed = sampled("packaged:hh-harmless", 4, instruction)
    _, bare = sampled("packaged:hh-harmless", 4, None)
    expected = [
        (prompt, sorted(ours, key=len)[-1], min(theirs, key=len))  # the last of tied best ones
        for prompt, ours, theirs in zip(prompts, instructed, bare)
        if len(sorted(ours, key=len)[-1]) > len(min(theirs, key=len)) and sorted(ours, key=len)[-1].strip()
    ]
    got = [
        (r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in trained["training"]
    ]
    assert got == expected and report["pairs"] == len(expected) > 0
    kept, pulled = sampled("packaged:hh-helpful-sft", 3, instruction)
    _, own = sampled("packaged:hh-helpful-sft", 3, None)
    expected_kept = [
        (prompt, answers[0], max(candidates, key=len))
        for prompt, answers, candidates in zip(kept, own, pulled)
        if len(max(candidates, key=len)) > len(answers[0]) and answers[0].strip()
    ]
    got_kept = [
        (r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in trained["kept"]
    ]
    assert got_kept == expected_kept and report["kept"] == len(expected_kept) > 0
    line = job.make_expert_summary({**report, "final_loss": 0.0, "train_seconds": 1.0}, "x")
    assert f"the base's own answer preferred to the objective's pick on {report['kept']} kept prompts" in line


def test_iterated_dpo_samples_each_round_from_the_last_and_resumes_at_its_round(tiny_chat_model, tmp_path, monkeypatch):
    """Round 2 samples its candidates from round 1's model and trains from it (its DPO reference); the
    report keeps the job's own base and settings and each round's figures; a job killed in round 2
    reruns round 2 only; the rounds folder is gone at the end."""
    pytest.importorskip("trl")
    from trl import DPOTrainer

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    import hoe.training.make_expert as job

    sampled_from, trained_from = [], []
    real_sample, real_dpo = job.sample_candidates, job._dpo
    monkeypatch.setattr(
        job, "sample_candidates", lambda base, *a, **kw: sampled_from.append(base) or real_sample(base, *a, **kw)
    )
    monkeypatch.setattr(job, "_dpo", lambda base, *a, **kw: trained_from.append(base) or real_dpo(base, *a, **kw))
    settings = _dpo_settings().model_copy(update={"round_steps": [2, 2]})
    out, base = tmp_path / "expert", str(tiny_chat_model)
    round_one = str(tmp_path / "expert.rounds" / "round-1")
    restore = interrupt_at_call(monkeypatch, DPOTrainer, "training_step", 4)  # the second step of round 2
    with pytest.raises(KeyboardInterrupt):
        make_expert(base, settings, out, progress=False)
    restore()
    assert sampled_from == [base, round_one] and trained_from == [base, round_one] and not out.exists()
    report = make_expert(base, settings, out, progress=False)
    assert sampled_from[2:] == [round_one] and trained_from[2:] == [round_one]  # round 1 was not made again
    assert report["resumed_from"].endswith("checkpoint-1")  # round 2 went on from its own checkpoint
    saved = json.loads((out / "make_expert_report.json").read_text())
    assert saved["base"] == base and saved["settings"]["round_steps"] == [2, 2]
    assert [r["steps"] for r in saved["rounds"]] == [2, 2] and all(r["pairs"] > 0 for r in saved["rounds"])
    assert not (tmp_path / "expert.rounds").exists() and (out / "model.safetensors").is_file()
    assert "in the last of 2 rounds" in job.make_expert_summary(report, out)


def on_topic(prompts, responses):
    """A stand-in floor objective (the tests below replace its scores)."""
    return [1.0] * len(responses)


FLOOR = f"py:{__name__}:on_topic"
# per candidate (4 prompts, k 3): the objective prefers the first, the floor allows only some
OBJECTIVE_SCORES = [3.0, 2.0, 1.0] * 4
FLOOR_SCORES = [0.0, 0.6, 0.6] + [0.0, 0.1, 0.4] + [0.9, 0.9, 0.9] + [0.0, 0.0, 0.5]


def fixed_scores(monkeypatch) -> None:
    import hoe.training.make_expert as job

    def scores(objectives, prompts, responses, **kwargs):
        assert len(responses) == 12
        return {name: FLOOR_SCORES if name == FLOOR else OBJECTIVE_SCORES for name in objectives}

    monkeypatch.setattr(job, "score_objectives", scores)


def test_a_floor_keeps_candidates_under_it_out_of_what_raft_learns(tiny_chat_model, tmp_path, monkeypatch):
    """The best candidate at or above the floor is learnt, not the objective's best under it; a prompt with
    no candidate at the floor is left out, and the report and the summary line say how many."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    import hoe.training.make_expert as job

    fixed_scores(monkeypatch)
    learnt = record_finetune(monkeypatch)
    settings = MakeExpertSettings.create(
        objective=f"py:{__name__}:response_length", prompt_count=4, k=3, floor={FLOOR: 0.5}, **TINY_JOB
    )
    report = make_expert(str(tiny_chat_model), settings, tmp_path / "expert", progress=False)
    prompts = job.load_prompts(settings.prompts, "train", limit=4)
    rows = sample_candidates(str(tiny_chat_model), prompts, settings.sampling, progress=False)  # from the cache
    expected = [(rows[0]["prompt"], rows[0]["responses"][1]), (rows[2]["prompt"], rows[2]["responses"][0])]
    expected.append((rows[3]["prompt"], rows[3]["responses"][2]))
    assert learnt == expected and report["pairs"] == 3 and report["below_floor"] == 1
    assert report["chosen_mean"] == pytest.approx(2.0)  # 2, 3 and 1: not the objective's 3 everywhere
    assert "1 prompts left out, no candidate at the floor" in job.make_expert_summary(report, tmp_path / "expert")


def test_preference_pairs_choose_only_eligible_answers():
    from hoe.training.make_expert import preference_pairs

    groups = [_group("p1", ["a", "b", "c"], [3.0, 2.0, 1.0]), _group("p2", ["x", "y"], [2.0, 1.0])]
    pairs = preference_pairs(groups, eligible=[[False, True, True], [False, False]])
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in pairs] == [("b", "c", 1.0)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "ppo", "floor": {"relevance": 0.5}}, "methods 'raft', 'distill' and 'dpo' only"),
        ({"floor": {}}, "at least one objective=score"),
        ({"floor": {"civility": 0.5}}, "a floor on the objective itself"),
        ({"floor": {"relevance": "high"}}, r"floor \(--floor\)"),
    ],
)
def test_bad_floors_are_one_line(values, message):
    with pytest.raises(HoEError, match=message):
        MakeExpertSettings.create(objective="civility", **values)


def test_floors_are_spelt_one_way_on_every_command_line():
    """parse_floor serves the CLI and the experts benchmark: pairs separated by commas, spaces allowed;
    a part without a number is one line naming the whole value."""
    assert parse_floor("relevance=0.5, civility=0.9") == {"relevance": 0.5, "civility": 0.9}
    assert parse_floor("relevance=0.125") == {"relevance": 0.125}
    for bad in ("relevance", "relevance=high", "relevance=0.5;civility=1"):
        with pytest.raises(HoEError, match=f"--floor takes objective=score pairs.*{bad!r}"):
            parse_floor(bad)


def test_an_unknown_floor_objective_fails_before_sampling(tiny_chat_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    settings = MakeExpertSettings.create(objective="civility", floor={"on_topicness": 0.5}, **TINY_JOB)
    with pytest.raises(HoEError, match="unknown objective 'on_topicness'"):
        make_expert(str(tiny_chat_model), settings, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache" / "candidates").exists()


def test_a_floor_counts_in_cache_keys_and_fingerprints_only_when_set():
    plain = MakeExpertSettings(objective="civility")
    assert "floor" not in plain.cache_fields() and "floor" not in plain.fingerprint_fields()
    floored = plain.model_copy(update={"floor": {"relevance": 0.5}})
    assert floored.cache_fields()["floor"] == {"relevance": 0.5} == floored.fingerprint_fields()["floor"]


def test_a_model_made_again_at_the_same_path_is_sampled_again(tiny_chat_model, tmp_path, monkeypatch):
    """The candidates' cache is keyed by the model's weights, not its folder alone: a model written again at
    the same path (make-expert --overwrite, a rerun's round-1) does not reuse the last one's samples."""
    import os

    from hoe.training.sampling import candidates_file

    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    before = candidates_file(str(tiny_chat_model), PROMPTS, SETTINGS)
    assert candidates_file(str(tiny_chat_model), PROMPTS, SETTINGS) == before
    weights = next(tiny_chat_model.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert candidates_file(str(tiny_chat_model), PROMPTS, SETTINGS) != before
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_round_left_by_a_job_with_other_settings_is_not_reused(tmp_path):
    """Iterated DPO skips a round only if this job made it: same model, same settings."""
    from hoe.training.make_expert import finished_round

    settings = _dpo_settings()
    folder = tmp_path / "round-1"
    assert finished_round(folder, "base", settings) is None
    folder.mkdir()
    saved = {"base": "base", "settings": settings.model_dump(), "pairs": 3}
    (folder / "make_expert_report.json").write_text(json.dumps(saved))
    assert finished_round(folder, "base", settings) == saved  # its report, read once
    assert finished_round(folder, "other-base", settings) is None
    assert finished_round(folder, "base", settings.model_copy(update={"learning_rate": 5e-4})) is None
