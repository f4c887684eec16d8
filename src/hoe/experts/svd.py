"""task-SVD: the best rank-r factors B, A of a weight delta, with B A ≈ τ (Eckart–Young).

Backends:
- ``exact``: eigendecomposition of the float64 Gram matrix of the delta's smaller side. This is
  the full SVD (same singular triplets as LAPACK's, to ~1e-7·σ₁), about 3× faster than
  ``torch.linalg.svd`` on the CPU; singular values under ``1e-5·σ₁`` are numerical zero and dropped.
- ``randomized``: a seeded randomized range finder with power iterations (Halko, Martinsson &
  Tropp 2011) in the delta's own precision; far cheaper when r ≪ min(m, n).

Factors are split symmetrically, B = U_r S_r^½ and A = S_r^½ V_rᵀ, so the adapter's scaling is 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Literal, get_args

import torch

from hoe.errors import HoEError

SvdBackend = Literal["exact", "randomized"]
SVD_BACKENDS: tuple[str, ...] = get_args(SvdBackend)
NUMERICAL_ZERO = 1e-5  # singular values below this share of σ₁ carry no signal


@dataclass
class LowRankFactors:
    """Rank-r factors of a delta and how much of it they keep."""

    B: torch.Tensor  # (out, r)
    A: torch.Tensor  # (r, in)
    singular_values: torch.Tensor  # the r kept values, descending
    total_energy: float  # ‖τ‖²_F
    residual_energy: float | None = None  # ‖τ − B A‖²_F where measured directly

    @property
    def rank(self) -> int:
        return int(self.singular_values.numel())

    def cpu(self) -> "LowRankFactors":
        """The same factors with every tensor moved to the CPU."""
        return dataclasses.replace(self, B=self.B.cpu(), A=self.A.cpu(), singular_values=self.singular_values.cpu())

    @property
    def retained_energy(self) -> float:
        """Share of ‖τ‖²_F kept by B A (1.0 for a zero delta)."""
        if self.total_energy <= 0:
            return 1.0
        return min(1.0, float((self.singular_values.double() ** 2).sum()) / self.total_energy)

    @property
    def relative_error(self) -> float:
        """‖τ − B A‖_F / ‖τ‖_F. From energies for float64 backends (B A is τ projected on an
        orthonormal basis and truncated, so the discarded parts add up); measured directly for
        the float32 randomized backend, where 1 − retained would lose the small errors."""
        if self.total_energy <= 0:
            return 0.0
        if self.residual_energy is not None:
            return math.sqrt(self.residual_energy / self.total_energy)
        return math.sqrt(max(0.0, 1.0 - self.retained_energy))


def choose_rank(singular_values: torch.Tensor, total_energy: float, max_rank: int, energy: float | None) -> int:
    """Smallest rank keeping ``energy`` of ‖τ‖²_F (all of it when None), capped by ``max_rank``
    and by the numerical rank."""
    s = singular_values.double()
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    numerical_rank = int((s > s[0] * NUMERICAL_ZERO).sum())
    rank = min(max_rank, numerical_rank)
    if energy is not None and total_energy > 0:
        kept = torch.cumsum(s**2, 0) / total_energy
        reached = torch.nonzero(kept >= energy - 1e-12)
        if reached.numel():
            rank = min(rank, int(reached[0]) + 1)
    return rank


def _factors(
    U: torch.Tensor, s: torch.Tensor, V: torch.Tensor, total: float, rank: int, energy: float | None
) -> LowRankFactors:
    """Build B = U_r S_r^½, A = S_r^½ V_rᵀ from descending singular triplets."""
    r = choose_rank(s, total, rank, energy)
    root = s[:r].sqrt().to(U.dtype)
    B = U[:, :r] * root
    A = (V[:, :r] * root).T
    return LowRankFactors(B=B.contiguous(), A=A.contiguous(), singular_values=s[:r].clone(), total_energy=total)


@contextlib.contextmanager
def single_threaded_lapack() -> Iterator[None]:
    """Run scipy's OpenBLAS on one thread for the duration.

    torch's OpenMP workers keep spinning after each op and starve a multi-threaded OpenBLAS
    eigensolver that follows; on 2 cores, extracting SmolLM2 went from 12.1 s to 6.8 s this way.
    """
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that the limit applies to)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _top_eigh(gram: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` largest eigenpairs of a symmetric matrix, descending.

    On the CPU with few pairs wanted, LAPACK's MRRR driver computes only those (scipy's
    ``subset_by_index``), about 1.5× faster than the full decomposition at r = 16.
    """
    n = gram.shape[0]
    if gram.device.type == "cpu" and count * 8 <= n:
        import scipy.linalg

        values, vectors = scipy.linalg.eigh(gram.numpy(), subset_by_index=[n - count, n - 1], driver="evr")
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(gram)
    return values.flip(0)[:count].clamp_min(0), vectors.flip(1)[:, :count]


def _exact_factors(delta: torch.Tensor, rank: int, energy: float | None) -> LowRankFactors:
    """Top singular triplets of ``delta`` through the float64 Gram matrix of its smaller side;
    the other side's vectors are formed for the kept triplets only."""
    M = delta.double()
    tall = M.shape[0] >= M.shape[1]
    gram = M.T @ M if tall else M @ M.T
    total = float(gram.diagonal().sum())
    eigenvalues, vectors = _top_eigh(gram, min(rank, gram.shape[0]))
    s = eigenvalues.sqrt()
    r = choose_rank(s, total, rank, energy)
    s, vectors = s[:r], vectors[:, :r]
    root = s.sqrt()
    if tall:  # vectors are right singular vectors: B = M V / √s, A = √s Vᵀ
        B, A = (M @ vectors) / root, (vectors * root).T
    else:  # vectors are left singular vectors: B = U √s, A = Uᵀ M / √s
        B, A = vectors * root, (vectors.T @ M) / root[:, None]
    return LowRankFactors(B=B.contiguous(), A=A.contiguous(), singular_values=s.clone(), total_energy=total)


def _randomized(delta: torch.Tensor, rank: int, oversample: int, power_iters: int, seed: int):
    """Top singular triplets from a randomized range finder with QR-stabilised power iterations."""
    M = delta if delta.dtype in (torch.float32, torch.float64) else delta.float()
    m, n = M.shape
    width = min(rank + oversample, m, n)
    generator = torch.Generator(device=M.device).manual_seed(seed)
    probe = torch.randn(n, width, generator=generator, device=M.device, dtype=M.dtype)
    Q = torch.linalg.qr(M @ probe).Q
    for _ in range(power_iters):
        Q = torch.linalg.qr(M @ torch.linalg.qr(M.T @ Q).Q).Q
    U_small, s, Vh = torch.linalg.svd(Q.T @ M, full_matrices=False)
    total = float(M.double().square().sum())
    return Q @ U_small, s.double(), Vh.T, total


def task_svd(
    delta: torch.Tensor,
    rank: int,
    *,
    energy: float | None = None,
    method: str = "exact",
    oversample: int | None = None,
    power_iters: int = 3,
    seed: int = 0,
) -> LowRankFactors:
    """Best rank-``rank`` factors of a 2-D ``delta`` (fewer if ``energy`` is reached first)."""
    if delta.ndim != 2:
        raise HoEError(f"task-SVD needs a 2-D delta, got shape {tuple(delta.shape)}")
    if rank <= 0:
        raise HoEError(f"rank must be positive, got {rank}")
    if method == "exact":
        return _exact_factors(delta, rank, energy)
    if method == "randomized":
        extra = oversample if oversample is not None else max(8, rank // 2)
        U, s, V, total = _randomized(delta, rank, extra, power_iters, seed)
        factors = _factors(U.to(delta.dtype), s, V.to(delta.dtype), total, rank, energy)
        residual = delta.float() - factors.B.float() @ factors.A.float()
        factors.residual_energy = float(residual.double().square().sum())
        return factors
    raise HoEError(f"unknown SVD backend '{method}' (choose from {', '.join(SVD_BACKENDS)})")


def rerank_lora(
    B0: torch.Tensor, A0: torch.Tensor, scale: float, rank: int, *, energy: float | None = None
) -> LowRankFactors:
    """Best rank-``rank`` factors of ``scale · B0 A0`` without forming the dense product.

    QR of both factors (B0 = Q_b R_b, A0ᵀ = Q_a R_a) leaves a small r0×r0 core
    ``scale · R_b R_aᵀ`` whose SVD gives the singular triplets of the product.
    """
    if rank <= 0:
        raise HoEError(f"rank must be positive, got {rank}")
    Qb, Rb = torch.linalg.qr(B0.double())
    Qa, Ra = torch.linalg.qr(A0.double().T)
    U_core, s, Vh_core = torch.linalg.svd(scale * (Rb @ Ra.T))
    total = float((s**2).sum())
    return _factors(Qb @ U_core, s, Qa @ Vh_core.T, total, rank, energy)
