"""Merge methods for task vectors, one function each, in a registry (as mergekit does).

Every method combines the deltas ``τ_1..τ_N`` of one module (dense, shape (m, n)) under weights
``λ_1..λ_N`` (non-negative, as given) into one delta. Adding a method is one decorated function
with keyword parameters and defaults.

Conventions, stated because the papers leave them open:
- ``linear`` is task arithmetic Σ λ_i τ_i with the weights as given (weights summing to 1 give
  an average, weights of 1 give a sum).
- ``ties`` / ``dare_ties`` / ``pcb`` take a weighted *mean* of the surviving entries
  (``normalize=True``, as mergekit): Σ λ_i m_i τ_i / Σ λ_i m_i per entry. peft's ``ties``
  divides by the count of surviving entries instead, and applies TIES to the A and B factors
  separately unless ``*_svd`` is used; hoe always works on the dense delta B A of each module.
- Trimming, sign election and PCB's balancing are per module (per weight matrix), not global.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from hoe.errors import HoEError


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
            raise HoEError(f"--density must lie in (0, 1], got {density}")
        if params.get("majority_sign") not in (None, "total", "count"):
            raise HoEError(f"--majority-sign must be 'total' or 'count', got '{params['majority_sign']}'")
        keep = params.get("keep")
        if keep is not None and not (0.0 < float(keep) <= 1.0):
            raise HoEError(f"--keep must lie in (0, 1], got {keep}")
        return params


MERGE_METHODS: dict[str, MergeMethod] = {}


def merge_method(name: str, summary: str, factored: Callable[..., Factors] | None = None):
    """Register ``function(deltas, weights, *, generator, **params)`` under ``name``.

    ``deltas`` is the (N, m, n) stack of one module's task vectors. ``factored``, if given, takes
    ``[(B_i, A_i)]`` and the same parameters and returns factors of the same merged delta: it is
    used when every input is a LoRA expert, so nothing of size m × n is formed.
    """

    def register(function):
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


def _weighted(deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return deltas * weights.view(-1, *([1] * (deltas.ndim - 1))).to(deltas.dtype)


def magnitude_trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` share of entries with the largest magnitude, zero the rest."""
    keep = int(round(density * delta.numel()))
    if keep >= delta.numel():
        return delta
    if keep <= 0:
        return torch.zeros_like(delta)
    threshold = delta.abs().flatten().kthvalue(delta.numel() - keep).values
    return torch.where(delta.abs() > threshold, delta, torch.zeros_like(delta))


def random_drop(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: drop each entry with probability 1 − density, rescale survivors by 1 / density."""
    if density >= 1.0:
        return delta
    mask = torch.rand(delta.shape, generator=generator, device=delta.device) < density
    return torch.where(mask, delta / density, torch.zeros_like(delta))


def elect_sign(weighted: torch.Tensor, method: str) -> torch.Tensor:
    """TIES sign election per entry: the sign of the summed mass ('total') or of the count."""
    if method == "count":
        return torch.sign(torch.sign(weighted).sum(0))
    return torch.sign(weighted.sum(0))


def disjoint_mean(deltas: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Combine the entries that agree with the elected sign (zeros never agree)."""
    agree = (torch.sign(deltas) == sign) & (sign != 0)
    weighted = _weighted(deltas, weights) * agree
    total = weighted.sum(0)
    if not normalize:
        return total
    mass = (_weighted(agree.to(deltas.dtype), weights)).sum(0)
    return torch.where(mass.abs() > 1e-12, total / mass.clamp_min(1e-12), torch.zeros_like(total))


def linear_factored(factors: list[Factors], weights: torch.Tensor) -> Factors:
    """Σ λ_i B_i A_i as one pair: B = [λ_1 B_1 … λ_N B_N], A = [A_1; …; A_N]."""
    B = torch.cat([float(w) * b.double() for (b, _), w in zip(factors, weights)], dim=1)
    A = torch.cat([a.double() for _, a in factors], dim=0)
    return B, A


@merge_method("linear", "task arithmetic: Σ λ_i τ_i", factored=linear_factored)
def linear(deltas: torch.Tensor, weights: torch.Tensor, *, generator=None) -> torch.Tensor:
    return _weighted(deltas, weights).sum(0)


@merge_method("ties", "TIES: trim to top-density magnitude, elect sign, disjoint weighted mean")
def ties(deltas, weights, *, density: float = 0.2, majority_sign: str = "total", normalize: bool = True, generator=None):
    trimmed = torch.stack([magnitude_trim(d, density) for d in deltas])
    return disjoint_mean(trimmed, weights, elect_sign(_weighted(trimmed, weights), majority_sign), normalize)


@merge_method("dare_linear", "DARE: random drop with rescale, then Σ λ_i τ_i")
def dare_linear(deltas, weights, *, density: float = 0.5, seed: int = 0, generator=None):
    dropped = torch.stack([random_drop(d, density, generator) for d in deltas])
    return _weighted(dropped, weights).sum(0)


@merge_method("dare_ties", "DARE drop and rescale, then TIES sign election and disjoint mean")
def dare_ties(deltas, weights, *, density: float = 0.5, seed: int = 0, majority_sign: str = "total", normalize: bool = True, generator=None):
    dropped = torch.stack([random_drop(d, density, generator) for d in deltas])
    return disjoint_mean(dropped, weights, elect_sign(_weighted(dropped, weights), majority_sign), normalize)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to [0, 1] (a constant row becomes 0)."""
    low = x.min(dim=1, keepdim=True).values
    span = x.max(dim=1, keepdim=True).values - low
    return (x - low) / torch.where(span > 0, span, torch.ones_like(span))


def _row_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row order statistic at share ``q`` (the PCB code's sort-and-index, via kthvalue)."""
    d = x.shape[1]
    k = min(d, max(1, int(d * q) + 1))
    return x.kthvalue(k, dim=1, keepdim=True).values


@merge_method("pcb", "PCB-merging: intra-balance by normalised magnitude, inter-balance by agreement, prune, weighted mean")
def pcb(deltas, weights, *, density: float = 0.2, clip: float = 1e-4, generator=None):
    """Du et al. 2024. Per task, ``exp(N·minmax(|τ_i|)²)`` (intra) times ``tanh(τ_i ⊙ Σ_j λ_j τ_j)``
    (inter) scores each entry; all but the top ``density`` share per task are dropped and the rest
    rescaled to [0, 1]; the result is the score- and λ-weighted mean. ``clip`` trims outlier
    magnitudes to the [clip, 1 − clip] quantiles first, as the reference code does."""
    n = deltas.shape[0]
    flat = deltas.reshape(n, -1)
    magnitude = flat.abs()
    if clip > 0:
        magnitude = torch.minimum(torch.maximum(magnitude, _row_quantile(magnitude, clip)), _row_quantile(magnitude, 1 - clip))
    clipped = torch.sign(flat) * magnitude
    intra = torch.exp(n * _minmax(magnitude) ** 2)
    inter = torch.tanh(flat * _weighted(flat, weights).sum(0))
    score = intra * inter
    floor = _row_quantile(score, 1 - density)
    scale = _minmax(torch.maximum(score, floor)) * weights.view(-1, 1).to(flat.dtype)
    merged = (clipped * scale).sum(0) / scale.sum(0).clamp_min(1e-12)
    return merged.reshape(deltas.shape[1:])


def _orthogonalise(M: torch.Tensor) -> torch.Tensor:
    """The nearest matrix with orthonormal columns (polar factor): U Vᵀ of M's thin SVD."""
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return U @ Vh


def _tsv_rank(shape, count: int, keep: float | None) -> int:
    return max(1, int((keep if keep is not None else 1.0 / count) * min(shape)))


def _tsv_rebuild(triplets, weights: torch.Tensor, rank: int) -> Factors:
    """Stack each task's top ``rank`` triplets, orthogonalise the U and V stacks, weight S by λ."""
    U = _orthogonalise(torch.cat([u[:, :rank] for u, _, _ in triplets], 1))
    V = _orthogonalise(torch.cat([v[:, :rank] for _, _, v in triplets], 1))
    S = torch.cat([float(w) * s[:rank] for (_, s, _), w in zip(triplets, weights)])
    return U * S, V.T


def tsv_factored(factors: list[Factors], weights: torch.Tensor, *, keep: float | None = None) -> Factors:
    """TSV-M from LoRA factors: each task's singular triplets come from QR + a small SVD."""
    from hoe.experts.svd import rerank_lora

    shape = (factors[0][0].shape[0], factors[0][1].shape[1])
    triplets = []
    for B, A in factors:
        f = rerank_lora(B, A, 1.0, rank=min(B.shape[1], min(shape)))
        s = f.singular_values
        root = s.sqrt()
        triplets.append((f.B / root, s, f.A.T / root))  # B = U √s, A = √s Vᵀ
    return _tsv_rebuild(triplets, weights, _tsv_rank(shape, len(factors), keep))


@merge_method("tsv", "TSV-M: per-task top singular vectors, decorrelated by orthogonalisation, rebuilt", factored=tsv_factored)
def tsv(deltas, weights, *, keep: float | None = None, generator=None):
    """Gargiulo et al. 2025. Keep the top ``keep·min(m, n)`` singular triplets of each τ_i
    (default 1/N), stack the U's and V's, replace each stack by its nearest orthonormal matrix,
    and rebuild with the λ-weighted singular values."""
    triplets = []
    for delta in deltas.double():
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
        triplets.append((U, S, Vh.T))
    B, A = _tsv_rebuild(triplets, weights, _tsv_rank(deltas.shape[1:], deltas.shape[0], keep))
    return (B @ A).to(deltas.dtype)
