"""GPU timing of task-SVD at 7B scale: Llama-2-7B-shaped deltas (all 7 projections of 32 layers,
planted low-rank plus noise, made on the GPU), rank 256, both backends.

    python benchmarks/extract/gpu_7b.py --out benchmarks/extract/gpu_7b.json

Only the SVD work is timed (the deltas are generated first, one module at a time, outside the
timer); this is what `hoe extract` does per module once the tensor pair is on the GPU.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hoe.experts.svd import task_svd

HIDDEN, INTERMEDIATE, LAYERS = 4096, 11008, 32
SHAPES = {
    "q_proj": (HIDDEN, HIDDEN),
    "k_proj": (HIDDEN, HIDDEN),
    "v_proj": (HIDDEN, HIDDEN),
    "o_proj": (HIDDEN, HIDDEN),
    "gate_proj": (INTERMEDIATE, HIDDEN),
    "up_proj": (INTERMEDIATE, HIDDEN),
    "down_proj": (HIDDEN, INTERMEDIATE),
}


def planted(shape: tuple[int, int], generator: torch.Generator, device: str, signal_rank: int = 512) -> torch.Tensor:
    """A decaying-spectrum delta: rank-`signal_rank` signal plus dense noise (as a fine-tune delta looks)."""
    out_dim, in_dim = shape
    decay = torch.logspace(0, -2, signal_rank, device=device)
    left = torch.randn(out_dim, signal_rank, device=device, generator=generator) * decay
    right = torch.randn(signal_rank, in_dim, device=device, generator=generator)
    return (left @ right) * 1e-3 + 1e-5 * torch.randn(out_dim, in_dim, device=device, generator=generator)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(method: str, rank: int, layers: int, device: str) -> dict:
    generator = torch.Generator(device=device).manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds, errors = 0.0, []
    for _ in range(layers):
        for shape in SHAPES.values():
            delta = planted(shape, generator, device)
            _sync(device)
            start = time.perf_counter()
            factors = task_svd(delta, rank, method=method)
            _sync(device)
            seconds += time.perf_counter() - start
            errors.append(factors.relative_error)
    return {
        "method": method,
        "rank": rank,
        "modules": len(errors),
        "svd_seconds": round(seconds, 2),
        "mean_relative_error": round(sum(errors) / len(errors), 6),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=256)
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument(
        "--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run: --layers 1 --rank 8)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    task_svd(torch.randn(512, 512, device=args.device), 8, method="randomized")  # warm-up kernels
    task_svd(torch.randn(512, 512, device=args.device), 8, method="exact")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    results = {"device": name, "torch": torch.__version__, "runs": []}
    for method in ("randomized", "exact"):
        results["runs"].append(run(method, args.rank, args.layers, args.device))
        print(results["runs"][-1], flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
