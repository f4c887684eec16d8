"""GPU decode-step cost of HoE at 7B scale: a Llama-2-7B-shaped model (random bf16 weights),
3 experts of rank 256 on all 7 projections plus one router, batch 1 and 32. The ratio of a
decode step's time to the base model's, same decoding stack (HF eager forward with KV cache),
the two timed in turns step by step.

    python benchmarks/inference/gpu_7b.py --out benchmarks/inference/gpu_7b.json
    python benchmarks/inference/gpu_7b.py --tiny          # CPU smoke run of the same code path
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hoe.model import HoEModel

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(tiny: bool, rank: int, device: str, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    if tiny:
        config = LlamaConfig(
            vocab_size=512, hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4
        )
    else:
        config = LlamaConfig(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
        )
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    generator = torch.Generator(device=device).manual_seed(0)
    experts = []
    for k, name in enumerate(["a", "b", "c"]):
        factors = {}
        for module_name, module in model.named_modules():
            if module_name.rsplit(".", 1)[-1] in PROJECTIONS:
                out_dim, in_dim = module.weight.shape
                B = torch.randn(out_dim, rank, device=device, dtype=dtype, generator=generator) * 1e-3
                A = torch.randn(rank, in_dim, device=device, dtype=dtype, generator=generator) * 1e-3
                factors[module_name] = (B, A)
        experts.append((name, [1.0 if i == k else 0.0 for i in range(3)], factors))
    with torch.device(device):
        base = LlamaForCausalLM(config).to(dtype).eval()  # same config, its own copy of the weights
    base.load_state_dict(model.state_dict())
    hoe = HoEModel.from_modules(
        model, None, ["a", "b", "c"], experts, routers=[("r", [0.5, 0.25, 0.25], ["a", "b", "c"])]
    )
    return base, hoe, config


def paired_step_times(
    base, hoe_model, batch: int, device: str, context: int, steps: int, warmup: int = 5
) -> tuple[float, float]:
    """Median decode-step seconds of the base and the HoE model, timed in turns (base, HoE, base, …)
    so that clock ramps and background load hit both alike."""
    ids = torch.randint(0, 500, (batch, context), device=device)
    state, times = {}, {"base": [], "hoe": []}
    models = {"base": base, "hoe": hoe_model}
    for name, model in models.items():
        out = model(input_ids=ids, use_cache=True)
        state[name] = (out.past_key_values, out.logits[:, -1:].argmax(-1))
    for _ in range(warmup + steps):
        for name, model in models.items():
            past, token = state[name]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            state[name] = (out.past_key_values, out.logits[:, -1:].argmax(-1))
    return statistics.median(times["base"][warmup:]), statistics.median(times["hoe"][warmup:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rank", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    base, hoe, _ = build(args.tiny, 8 if args.tiny else args.rank, device, dtype)
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "rank": args.rank, "runs": []}
    with torch.inference_mode():
        for batch in (1, 32):
            row = {"batch": batch}
            for label, preference in (("one_lambda", [0.6, 0.3, 0.1]), ("router", [0.5, 0.25, 0.25])):
                with hoe.preference(preference):
                    base_s, seconds = paired_step_times(base, hoe.model, batch, device, args.context, args.steps)
                row[f"{label}_base_ms"] = round(base_s * 1e3, 3)
                row[f"{label}_ms"] = round(seconds * 1e3, 3)
                row[f"{label}_ratio"] = round(seconds / base_s, 3)
            results["runs"].append(row)
            print(row, flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
