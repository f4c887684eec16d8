"""task-SVD backends against LAPACK's SVD; LoRA re-ranking without the dense product."""

from __future__ import annotations

import pytest
import torch

from hoe.errors import HoEError
from hoe.experts.svd import choose_rank, rerank_lora, task_svd


def _best(M: torch.Tensor, r: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(M.double(), full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]


@pytest.mark.parametrize("shape", [(300, 120), (120, 300), (64, 64)])
@pytest.mark.parametrize("rank", [4, 40])  # 4 takes the partial-eigh path, 40 the full one
def test_exact_equals_lapack_truncation(shape, rank):
    torch.manual_seed(0)
    M = torch.randn(*shape) @ torch.diag(torch.logspace(0, -2, shape[1]))
    factors = task_svd(M, rank)
    best = _best(M, rank)
    assert factors.rank == rank
    assert float((factors.B @ factors.A - best).norm() / best.norm()) < 1e-8
    true_error = float((M.double() - best).norm() / M.double().norm())
    assert factors.relative_error == pytest.approx(true_error, rel=1e-6)
    assert torch.allclose(factors.B.T @ factors.B, torch.diag(factors.singular_values), atol=1e-8)  # B = U S^1/2


def test_randomized_close_to_exact_on_flat_spectrum():
    """Gaussian noise is the hardest case for a range finder: all singular values alike."""
    torch.manual_seed(1)
    M = torch.randn(400, 200)
    exact, fast = task_svd(M, 16), task_svd(M, 16, method="randomized")
    assert exact.relative_error <= fast.relative_error <= exact.relative_error * 1.01
    direct = float((M - fast.B @ fast.A).norm() / M.norm())
    assert fast.relative_error == pytest.approx(direct, rel=1e-4)


def test_randomized_is_seeded():
    M = torch.randn(100, 80)
    a, b = task_svd(M, 8, method="randomized", seed=3), task_svd(M, 8, method="randomized", seed=3)
    assert torch.equal(a.B, b.B) and torch.equal(a.A, b.A)


def test_energy_rank_and_numerical_rank():
    s = torch.tensor([4.0, 2.0, 1.0, 1e-9])
    total = float((s**2).sum())
    assert choose_rank(s, total, 10, None) == 3  # 1e-9 is numerical zero
    assert choose_rank(s, total, 10, 0.75) == 1  # 16/21 ≥ 0.75
    assert choose_rank(s, total, 10, 0.9) == 2
    assert choose_rank(s, total, 1, 0.99) == 1  # capped
    assert choose_rank(torch.zeros(3), 0.0, 4, None) == 0
    factors = task_svd(torch.zeros(8, 6), 4)
    assert factors.rank == 0 and factors.relative_error == 0.0


def test_rerank_lora_keeps_product_and_truncates_optimally():
    torch.manual_seed(2)
    B0, A0 = torch.randn(90, 6), torch.randn(6, 70)
    product = 0.5 * B0.double() @ A0.double()
    same = rerank_lora(B0, A0, 0.5, 10)
    assert same.rank == 6 and float((same.B @ same.A - product).norm() / product.norm()) < 1e-10
    smaller = rerank_lora(B0, A0, 0.5, 3)
    assert float((smaller.B @ smaller.A - _best(product, 3)).norm() / product.norm()) < 1e-10


def test_bad_arguments():
    with pytest.raises(HoEError, match="rank must be positive"):
        task_svd(torch.randn(4, 4), 0)
    with pytest.raises(HoEError, match="2-D"):
        task_svd(torch.randn(4), 2)
    with pytest.raises(HoEError, match="unknown SVD backend"):
        task_svd(torch.randn(4, 4), 2, method="qr")
