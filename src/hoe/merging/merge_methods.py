"""Merge methods for task vectors, one function each, in a registry (as mergekit does).

Every method combines the deltas ``τ_1..τ_N`` of one module (dense, shape (m, n)) under weights
``λ_1..λ_N`` (non-negative, as given) into one delta. Adding a method is one decorated function
with keyword parameters and defaults.

Conventions, stated because the papers leave them open:
- ``linear`` is task arithmetic Σ λ_i τ_i with the weights as given (weights summing to 1 give
  an average, weights of 1 give a sum).
- ``ties`` / ``pcb`` take a weighted *mean* of the surviving entries (``normalize=True``, as
  mergekit): Σ λ_i m_i τ_i / Σ λ_i m_i per entry. peft's ``ties`` divides by the count of surviving
  entries instead, and applies TIES to the A and B factors separately unless ``*_svd`` is used;
  hoe always works on the dense delta B A of each module.
- ``dare_ties`` takes the weighted *sum* of the agreeing entries by default (``normalize=False``,
  mergekit's default for it): DARE's 1/density rescale already makes each τ_i unbiased, so the
  merge's expected value is the linear Σ λ_i τ_i on entries where the experts agree. Dividing by
  the surviving weight as well (``normalize=True``) scales the merge by about 1/density where the
  experts agree: on two real experts it was 2.0× the linear average at density 0.5 and 3.5× at 0.2,
  against 1.3× and 1.9× with the sum.
- Trimming, sign election and PCB's balancing are per module (per weight matrix), not global.
- Trimming keeps exactly ``round(density · entries)`` entries, magnitudes tied at the threshold
  taken in order (a stable sort's choice); a tied sign vote elects + (mergekit's ``get_mask``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hoe.errors import HoEError
from hoe.experts.svd import rerank_lora
from hoe.settings import flag_name

Factors = tuple[torch.Tensor, torch.Tensor]  # (B, A) with delta = B @ A


@dataclass(frozen=True)
class MergeMethod:
    name: str
    function: Callable[..., torch.Tensor]
    parameters: dict[str, object]  # name -> default
    summary: str
    factored: Callable[..., Factors] | None = None  # same result from LoRA factors, no dense delta

    def resolve(self, given: dict[str, object]) -> dict[str, object]:
        """Defaults overlaid with ``given``; unknown names are refused."""
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            takes = ", ".join(self.parameters) or "no parameters"
            raise HoEError(f"merge method '{self.name}' takes {takes}; got {', '.join(unknown)}")
        params = {**self.parameters, **given}
        density = params.get("density")
        if density is not None and not (0.0 < float(density) <= 1.0):
            raise HoEError(f"{flag_name('density')} must lie in (0, 1], got {density}")
        if params.get("majority_sign") not in (None, "total", "count"):
            raise HoEError(f"{flag_name('majority_sign')} must be 'total' or 'count', got '{params['majority_sign']}'")
        clip = params.get("clip")
        if clip is not None and not (0.0 <= float(clip) < 0.5):
            raise HoEError(f"{flag_name('clip')} must lie in [0, 0.5), got {clip}")
        keep = params.get("keep")
        if keep is not None and not (0.0 < float(keep) <= 1.0):
            raise HoEError(f"{flag_name('keep')} must lie in (0, 1], got {keep}")
        return params


MERGE_METHODS: dict[str, MergeMethod] = {}


def merge_method(
    name: str, summary: str, factored: Callable[..., Factors] | None = None
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register ``function(deltas, weights, *, generator, **params)`` under ``name``.

    ``deltas`` is the (N, m, n) stack of one module's task vectors; ``generator`` is a numpy
    ``Generator`` seeded for this module (used by the random methods). ``factored``, if given, takes
    ``[(B_i, A_i)]`` and the same parameters and returns factors of the same merged delta: it is
    used when every input is a LoRA expert, so nothing of size m × n is formed. Use it as a
    decorator for a method of your own.
    """

    def register(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        signature = inspect.signature(function)
        parameters = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "generator"
        }
        MERGE_METHODS[name] = MergeMethod(name, function, parameters, summary, factored)
        return function

    return register


def get_method(name: str) -> MergeMethod:
    if name not in MERGE_METHODS:
        raise HoEError(f"unknown merge method '{name}' (choose from {', '.join(MERGE_METHODS)})")
    return MERGE_METHODS[name]


def _weighted_sum(deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k deltas_k in one pass (a matrix-vector product over the stacked entries)."""
    flat = deltas.reshape(deltas.shape[0], -1)
    return (weights.to(deltas.dtype) @ flat).reshape(deltas.shape[1:])


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry (1-based) of a 1-D tensor. On the CPU numpy's introselect is
    ~10× faster than ``torch.kthvalue`` (one order statistic per call: asking numpy for two at
    once is slower still)."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.tensor(np.partition(values.detach().numpy(), k - 1)[k - 1], dtype=values.dtype)
    return values.kthvalue(k).values


def magnitude_trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` share of entries with the largest magnitude (exactly, ties at the
    threshold in order), zero the rest."""
    keep = int(round(density * delta.numel()))
    if keep >= delta.numel():
        return delta
    if keep <= 0:
        return torch.zeros_like(delta)
    magnitude = delta.abs().flatten()
    threshold = _kth_smallest(magnitude, delta.numel() - keep)
    kept = magnitude > threshold
    missing = keep - int(kept.sum())
    if missing > 0:  # magnitudes tied at the threshold (common in bf16-born deltas): the first ones in order
        tied = magnitude == threshold
        kept |= tied & (torch.cumsum(tied, 0) <= missing)
    return delta * kept.view_as(delta)


def random_drop(delta: torch.Tensor, density: float, generator: np.random.Generator) -> torch.Tensor:
    """DARE: drop each entry with probability 1 − density, rescale survivors by 1 / density.

    The mask comes from numpy's PCG64 (faster than torch.rand on the CPU), so a merge draws the
    same mask on every device."""
    if density >= 1.0:
        return delta
    mask = torch.from_numpy(generator.random(tuple(delta.shape), dtype=np.float32) < density).to(delta.device)
    return (delta * mask).mul_(1.0 / density)


def elect_sign(deltas: torch.Tensor, weights: torch.Tensor, method: str) -> torch.Tensor:
    """TIES sign election per entry: the sign of the weighted mass ('total') or of the count of
    signs among experts with a positive weight ('count'); a tie elects +."""
    if method == "count":
        votes = _weighted_sum(
            torch.sign(deltas) * (weights > 0).view(-1, *([1] * (deltas.ndim - 1))), torch.ones_like(weights)
        )
    elif method == "total":
        votes = _weighted_sum(deltas, weights)
    else:
        raise HoEError(f"majority sign must be 'total' or 'count', got '{method}'")
    return torch.where(votes >= 0, 1.0, -1.0).to(deltas.dtype)  # a tie elects + (as mergekit's get_mask)


def disjoint_mean(deltas: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Combine the entries that agree with the elected sign (zeros never agree)."""
    agree = (deltas * sign) > 0  # same, non-zero sign
    total = _weighted_sum(deltas * agree, weights)
    if not normalize:
        return total
    mass = _weighted_sum(agree.to(deltas.dtype), weights)
    return total / torch.where(mass > 1e-12, mass, torch.ones_like(mass))


def linear_factored(factors: list[Factors], weights: torch.Tensor) -> Factors:
    """Σ λ_i B_i A_i as one pair: B = [λ_1 B_1 … λ_N B_N], A = [A_1; …; A_N]."""
    B = torch.cat([float(w) * b.double() for (b, _), w in zip(factors, weights)], dim=1)
    A = torch.cat([a.double() for _, a in factors], dim=0)
    return B, A


def linear(
    deltas: torch.Tensor, weights: torch.Tensor, *, generator: np.random.Generator | None = None
) -> torch.Tensor:
    return _weighted_sum(deltas, weights)


def ties(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    *,
    density: float = 0.2,
    majority_sign: str = "total",
    normalize: bool = True,
    generator: np.random.Generator | None = None,
) -> torch.Tensor:
    trimmed = torch.stack([magnitude_trim(d, density) for d in deltas])
    return disjoint_mean(trimmed, weights, elect_sign(trimmed, weights, majority_sign), normalize)


def dare_linear(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    *,
    density: float = 0.5,
    seed: int = 0,
    generator: np.random.Generator | None = None,
) -> torch.Tensor:
    dropped = torch.stack([random_drop(d, density, generator) for d in deltas])
    return _weighted_sum(dropped, weights)


def dare_ties(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    *,
    density: float = 0.5,
    seed: int = 0,
    majority_sign: str = "total",
    normalize: bool = False,
    generator: np.random.Generator | None = None,
) -> torch.Tensor:
    dropped = torch.stack([random_drop(d, density, generator) for d in deltas])
    return disjoint_mean(dropped, weights, elect_sign(dropped, weights, majority_sign), normalize)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to [0, 1] (a constant row becomes 0)."""
    low, high = torch.aminmax(x, dim=1, keepdim=True)
    span = high - low
    return (x - low) / torch.where(span > 0, span, torch.ones_like(span))


def _row_order_statistics(x: torch.Tensor, *indices: int) -> list[torch.Tensor]:
    """Per-row sorted values at 0-based ``indices`` (the PCB code's sort-and-index, by selection)."""
    d = x.shape[1]
    ks = [min(d, max(0, i)) + 1 for i in indices]
    rows = torch.stack([torch.stack([_kth_smallest(row, k) for k in ks]) for row in x]).to(
        x.device
    )  # (n, len(indices))
    return [rows[:, i : i + 1] for i in range(len(indices))]


def pcb(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    *,
    density: float = 0.2,
    clip: float = 1e-4,
    generator: np.random.Generator | None = None,
) -> torch.Tensor:
    """Du et al. 2024. Per task, ``exp(N·minmax(|τ_i|)²)`` (intra) times ``tanh(τ_i ⊙ Σ_j λ_j τ_j)``
    (inter) scores each entry; all but the top ``density`` share per task are dropped and the rest
    rescaled to [0, 1]; the result is the score- and λ-weighted mean. ``clip`` trims outlier
    magnitudes to the [clip, 1 − clip] quantiles first, as the reference code does."""
    n = deltas.shape[0]
    flat = deltas.reshape(n, -1)
    magnitude = flat.abs()
    d = flat.shape[1]
    if clip > 0:
        # the reference code's indices: sorted[int(d·c)] and sorted[int(d·(1 − c) − 1)]
        low, high = _row_order_statistics(magnitude, int(d * clip), int(d * (1 - clip) - 1))
        magnitude.clamp_(min=low, max=high)
    clipped = torch.sign(flat).mul_(magnitude)
    intra = _minmax(magnitude).square_().mul_(n).exp_()
    score = intra.mul_((flat * _weighted_sum(flat, weights)).tanh_())  # intra × inter
    (floor,) = _row_order_statistics(score, int(d * (1 - density)))
    score.clamp_(min=floor)  # the row minimum is now the floor
    span = score.amax(dim=1, keepdim=True) - floor
    scale = score.sub_(floor).div_(torch.where(span > 0, span, torch.ones_like(span)))
    scale.mul_(weights.view(-1, 1).to(flat.dtype))
    merged = (clipped * scale).sum(0) / scale.sum(0).clamp_min(1e-12)
    return merged.reshape(deltas.shape[1:])


def _orthogonalise(M: torch.Tensor) -> torch.Tensor:
    """The nearest matrix with orthonormal columns (polar factor): U Vᵀ of M's thin SVD."""
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return U @ Vh


def _tsv_rank(shape: tuple[int, ...], count: int, keep: float | None) -> int:
    return max(1, int((keep if keep is not None else 1.0 / count) * min(shape)))


def _tsv_rebuild(
    triplets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], weights: torch.Tensor, rank: int
) -> Factors:
    """Stack each task's top ``rank`` triplets, orthogonalise the U and V stacks, weight S by λ."""
    U = _orthogonalise(torch.cat([u[:, :rank] for u, _, _ in triplets], 1))
    V = _orthogonalise(torch.cat([v[:, :rank] for _, _, v in triplets], 1))
    S = torch.cat([float(w) * s[:rank] for (_, s, _), w in zip(triplets, weights)])
    return U * S, V.T


def tsv_factored(factors: list[Factors], weights: torch.Tensor, *, keep: float | None = None) -> Factors:
    """TSV-M from LoRA factors: each task's singular triplets come from QR + a small SVD."""
    shape = (factors[0][0].shape[0], factors[0][1].shape[1])
    triplets = []
    for B, A in factors:
        f = rerank_lora(B, A, 1.0, rank=min(B.shape[1], min(shape)))
        s = f.singular_values
        root = s.sqrt()
        triplets.append((f.B / root, s, f.A.T / root))  # B = U √s, A = √s Vᵀ
    return _tsv_rebuild(triplets, weights, _tsv_rank(shape, len(factors), keep))


def tsv(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    *,
    keep: float | None = None,
    generator: np.random.Generator | None = None,
) -> torch.Tensor:
    """Gargiulo et al. 2025. Keep the top ``keep·min(m, n)`` singular triplets of each τ_i
    (default 1/N), stack the U's and V's, replace each stack by its nearest orthonormal matrix,
    and rebuild with the λ-weighted singular values."""
    triplets = []
    for delta in deltas.double():
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
        triplets.append((U, S, Vh.T))
    B, A = _tsv_rebuild(triplets, weights, _tsv_rank(deltas.shape[1:], deltas.shape[0], keep))
    return (B @ A).to(deltas.dtype)


# Built-in methods are registered by a call rather than decorated: mutation testing (make mutation)
# skips decorated functions, and these are the ones it must reach.
merge_method("linear", "task arithmetic: Σ λ_i τ_i", factored=linear_factored)(linear)
merge_method("ties", "TIES: trim to top-density magnitude, elect sign, disjoint weighted mean")(ties)
merge_method("dare_linear", "DARE: random drop with rescale, then Σ λ_i τ_i")(dare_linear)
merge_method("dare_ties", "DARE drop and rescale, then TIES sign election and disjoint sum")(dare_ties)
merge_method(
    "pcb", "PCB-merging: intra-balance by normalised magnitude, inter-balance by agreement, prune, weighted mean"
)(pcb)
merge_method(
    "tsv", "TSV-M: per-task top singular vectors, decorrelated by orthogonalisation, rebuilt", factored=tsv_factored
)(tsv)
