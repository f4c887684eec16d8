"""The benchmarks' shared answering loop: batch by batch it gives what one generate call on each prompt
alone gives (greedy, left padding), in prompt order, with a decoding time."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hoe.benchmarking.generation import answer_prompts
from hoe.checkpoints.chat import encode_prompts

PROMPTS = ["hello there", "a much longer prompt than the first one, to make padding matter", "hi", "one more"]


def test_batched_greedy_answers_match_each_prompt_answered_alone(tiny_chat_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.padding_side = "left"
    answers = answer_prompts(model, tokenizer, PROMPTS, new_tokens=6, batch=3)
    alone = []
    for prompt in PROMPTS:
        inputs = encode_prompts(tokenizer, [prompt])
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        alone.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    assert answers.texts == alone and answers.ms_per_step > 0


def test_sampled_answers_follow_the_seed(tiny_chat_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.padding_side = "left"
    torch.manual_seed(1)
    first = answer_prompts(model, tokenizer, PROMPTS, new_tokens=6, sample=True).texts
    torch.manual_seed(1)
    assert answer_prompts(model, tokenizer, PROMPTS, new_tokens=6, sample=True).texts == first and len(first) == 4
