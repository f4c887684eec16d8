"""Each merge method against an independent dense computation written here on small matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hoe.errors import HoEError
from hoe.merging import MERGE_METHODS, get_method
from hoe.merging.merge_methods import linear_factored, tsv_factored

RNG = np.random.default_rng(0)
DELTAS = RNG.normal(size=(3, 12, 10))
WEIGHTS = np.array([0.5, 0.3, 0.2])


def run(name: str, deltas=DELTAS, weights=WEIGHTS, seed: int = 0, **params) -> np.ndarray:
    method = get_method(name)
    resolved = method.resolve(params)
    generator = np.random.default_rng(seed)
    out = method.function(torch.tensor(deltas), torch.tensor(weights), generator=generator, **resolved)
    return out.numpy()


def reference_trim(delta: np.ndarray, density: float) -> np.ndarray:
    keep = int(round(density * delta.size))
    order = np.argsort(-np.abs(delta).ravel(), kind="stable")
    mask = np.zeros(delta.size, bool)
    mask[order[:keep]] = True
    return np.where(mask.reshape(delta.shape), delta, 0.0)


def reference_disjoint_mean(deltas, weights, elected):
    out = np.zeros(deltas.shape[1:])
    for idx in np.ndindex(out.shape):
        num = den = 0.0
        for k in range(len(deltas)):
            value = deltas[k][idx]
            if value != 0 and np.sign(value) == elected[idx] and elected[idx] != 0:
                num += weights[k] * value
                den += weights[k]
        out[idx] = num / den if den > 0 else 0.0
    return out


def test_linear():
    np.testing.assert_allclose(run("linear"), np.tensordot(WEIGHTS, DELTAS, 1), atol=1e-12)


@pytest.mark.parametrize("majority", ["total", "count"])
def test_ties(majority):
    trimmed = np.stack([reference_trim(d, 0.3) for d in DELTAS])
    weighted = trimmed * WEIGHTS[:, None, None]
    votes = weighted.sum(0) if majority == "total" else np.sign(weighted).sum(0)
    elected = np.where(votes >= 0, 1.0, -1.0)  # mergekit's get_mask: a tie elects +
    expected = reference_disjoint_mean(trimmed, WEIGHTS, elected)
    np.testing.assert_allclose(run("ties", density=0.3, majority_sign=majority), expected, atol=1e-12)


def test_ties_without_normalisation_sums():
    trimmed = np.stack([reference_trim(d, 0.5) for d in DELTAS])
    elected = np.where((trimmed * WEIGHTS[:, None, None]).sum(0) >= 0, 1.0, -1.0)
    agree = (np.sign(trimmed) == elected) & (elected != 0)
    expected = (trimmed * agree * WEIGHTS[:, None, None]).sum(0)
    np.testing.assert_allclose(run("ties", density=0.5, normalize=False), expected, atol=1e-12)


def _dare_masks(seed: int, density: float):
    generator = np.random.default_rng(seed)
    return [generator.random(DELTAS.shape[1:], dtype=np.float32) < density for _ in DELTAS]


def test_dare_linear():
    masks = _dare_masks(7, 0.4)
    dropped = np.stack([np.where(m, d / 0.4, 0.0) for m, d in zip(masks, DELTAS)])
    np.testing.assert_allclose(run("dare_linear", seed=7, density=0.4), np.tensordot(WEIGHTS, dropped, 1), atol=1e-12)


def test_dare_ties():
    masks = _dare_masks(3, 0.6)
    dropped = np.stack([np.where(m, d / 0.6, 0.0) for m, d in zip(masks, DELTAS)])
    elected = np.where((dropped * WEIGHTS[:, None, None]).sum(0) >= 0, 1.0, -1.0)
    agreeing = np.where(dropped * elected > 0, dropped, 0.0)
    np.testing.assert_allclose(run("dare_ties", seed=3, density=0.6), np.tensordot(WEIGHTS, agreeing, 1), atol=1e-12)
    np.testing.assert_allclose(
        run("dare_ties", seed=3, density=0.6, normalize=True),
        reference_disjoint_mean(dropped, WEIGHTS, elected),
        atol=1e-12,
    )


@pytest.mark.parametrize("density", [0.5, 0.2])
def test_dare_ties_keeps_the_linear_scale_by_default(density):
    """Two agreeing experts (the same τ), λ = (0.5, 0.5): DARE's rescale makes each dropped τ_i
    unbiased, so the default sum (mergekit's) averages to the linear merge τ. The mean of the
    survivors (normalize=True) inflates it to about 1/density where any entry survives."""
    tau = np.random.default_rng(0).standard_normal((400, 500))
    deltas, weights = np.stack([tau, tau]), np.array([0.5, 0.5])
    ratio = np.abs(run("dare_ties", deltas=deltas, weights=weights, density=density)).sum() / np.abs(tau).sum()
    assert ratio == pytest.approx(1.0, abs=0.01)
    survives = 1 - (1 - density) ** 2  # share of entries some expert keeps
    inflated = run("dare_ties", deltas=deltas, weights=weights, density=density, normalize=True)
    assert np.abs(inflated).sum() / np.abs(tau).sum() == pytest.approx(survives / density, rel=0.01)


def test_dare_is_deterministic_per_seed():
    np.testing.assert_array_equal(run("dare_linear", seed=5), run("dare_linear", seed=5))
    assert not np.allclose(run("dare_linear", seed=5), run("dare_linear", seed=6))


def reference_pcb(deltas, weights, density, clip):
    """PCB-merging as its authors' code defines it (duguodong7/pcb-merging, ``clamp`` and
    ``PCB_merge``), written here from that definition: magnitudes clipped to the sorted values at
    indices ``int(d·c)`` and ``int(d·(1 − c) − 1)``; the score floor at index ``int(d·(1 − ratio))``.
    hoe adds the preference weights λ (inside the inter-balance sum and on the final scale)."""
    n, flat = len(deltas), deltas.reshape(len(deltas), -1)
    d = flat.shape[1]

    def minmax(row):
        span = row.max() - row.min()
        return (row - row.min()) / span if span > 0 else np.zeros_like(row)

    magnitude = np.abs(flat)
    if clip > 0:
        magnitude = np.stack(
            [np.clip(r, np.sort(r)[int(d * clip)], np.sort(r)[int(d * (1 - clip) - 1)]) for r in magnitude]
        )
    clipped = np.sign(flat) * magnitude
    intra = np.exp(n * np.stack([minmax(r) for r in magnitude]) ** 2)
    inter = np.tanh(flat * (weights[:, None] * flat).sum(0))
    score = intra * inter
    scale = np.stack([minmax(np.maximum(r, np.sort(r)[int(d * (1 - density))])) for r in score]) * weights[:, None]
    return ((clipped * scale).sum(0) / np.maximum(scale.sum(0), 1e-12)).reshape(deltas.shape[1:])


@pytest.mark.parametrize("clip", [0.0, 0.05, 1e-4])
def test_pcb(clip):
    np.testing.assert_allclose(
        run("pcb", density=0.25, clip=clip), reference_pcb(DELTAS, WEIGHTS, 0.25, clip), atol=1e-10
    )


def test_pcb_clips_the_largest_magnitude_of_a_small_tensor():
    """With the default clip 1e-4 and 120 entries the reference clips at sorted[int(119.988) − 1]
    = the second largest: the largest magnitude is pulled down to it (an index one too high never
    clips a tensor under 10⁴ entries)."""
    deltas = np.zeros((2, 12, 10))
    deltas[0] = RNG.normal(size=(12, 10))
    deltas[1] = deltas[0]
    merged = run("pcb", deltas=deltas, weights=np.array([0.5, 0.5]), density=1.0, clip=1e-4)
    magnitudes = np.sort(np.abs(deltas[0]).ravel())
    assert np.abs(merged).max() == pytest.approx(magnitudes[-2])


def reference_tsv(deltas, weights, keep):
    rank = max(1, int(keep * min(deltas.shape[1:])))
    us, ss, vs = [], [], []
    for delta, w in zip(deltas, weights):
        U, S, Vh = np.linalg.svd(delta, full_matrices=False)
        us.append(U[:, :rank]), ss.append(w * S[:rank]), vs.append(Vh[:rank].T)

    def polar(M):
        P, _, Qh = np.linalg.svd(M, full_matrices=False)
        return P @ Qh

    U, V = polar(np.concatenate(us, 1)), polar(np.concatenate(vs, 1))
    return U @ np.diag(np.concatenate(ss)) @ V.T


@pytest.mark.parametrize("keep", [None, 0.2])
def test_tsv(keep):
    expected = reference_tsv(DELTAS, WEIGHTS, keep if keep is not None else 1 / 3)
    np.testing.assert_allclose(run("tsv", **({} if keep is None else {"keep": keep})), expected, atol=1e-10)


def _low_rank_inputs(rank: int = 2):
    generator = torch.Generator().manual_seed(4)
    return [
        (
            torch.randn(12, rank, generator=generator, dtype=torch.float64),
            torch.randn(rank, 10, generator=generator, dtype=torch.float64),
        )
        for _ in range(3)
    ]


def test_factored_paths_equal_dense():
    factors = _low_rank_inputs()
    dense = torch.stack([b @ a for b, a in factors])
    weights = torch.tensor(WEIGHTS)
    B, A = linear_factored(factors, weights)
    torch.testing.assert_close(B @ A, get_method("linear").function(dense, weights))
    B, A = tsv_factored(factors, weights, keep=0.2)
    torch.testing.assert_close(B @ A, get_method("tsv").function(dense, weights, keep=0.2))


def test_registry_and_parameter_errors():
    assert set(MERGE_METHODS) == {"linear", "ties", "dare_linear", "dare_ties", "pcb", "tsv"}
    with pytest.raises(HoEError, match="unknown merge method 'slerp'"):
        get_method("slerp")
    with pytest.raises(HoEError, match="merge method 'linear' takes no parameters; got density"):
        get_method("linear").resolve({"density": 0.5})
    with pytest.raises(HoEError, match=r"density \(--density\) must lie in \(0, 1\], got 0"):
        get_method("ties").resolve({"density": 0})
    with pytest.raises(HoEError, match=r"majority_sign \(--majority-sign\) must be 'total' or 'count'"):
        get_method("ties").resolve({"majority_sign": "max"})


# ---- the registry, bounds and edge cases (found by mutation testing: make mutation) ----------


def test_a_registered_method_records_its_keyword_parameters():
    from hoe.merging.merge_methods import merge_method

    def halve(deltas, weights, *, factor: float = 0.5, generator=None):
        return factor * deltas.sum(0)

    try:
        merge_method("halve-test", "a test method")(halve)
        method = MERGE_METHODS["halve-test"]
        assert (method.name, method.function, method.summary, method.factored) == (
            "halve-test",
            halve,
            "a test method",
            None,
        )
        assert method.parameters == {"factor": 0.5}  # keyword-only, without the generator
    finally:
        MERGE_METHODS.pop("halve-test", None)
    try:
        merge_method("halve-factored-test", "a test method", factored=tsv_factored)(halve)
        assert MERGE_METHODS["halve-factored-test"].factored is tsv_factored
    finally:
        MERGE_METHODS.pop("halve-factored-test", None)
    assert get_method("tsv").factored is tsv_factored and get_method("ties").factored is None
    assert get_method("ties").parameters == {"density": 0.2, "majority_sign": "total", "normalize": True}
    assert get_method("dare_ties").parameters == {
        "density": 0.5,
        "seed": 0,
        "majority_sign": "total",
        "normalize": False,
    }
    assert get_method("pcb").parameters == {"density": 0.2, "clip": 1e-4} and get_method("tsv").parameters == {
        "keep": None
    }


@pytest.mark.parametrize("name", ["ties", "dare_linear", "dare_ties", "pcb", "tsv"])
def test_the_functions_own_defaults_are_the_registered_ones(name):
    method = get_method(name)
    deltas, weights = torch.tensor(DELTAS), torch.tensor(WEIGHTS)
    direct = method.function(deltas, weights, generator=np.random.default_rng(0))
    resolved = method.function(deltas, weights, generator=np.random.default_rng(0), **method.resolve({}))
    torch.testing.assert_close(direct, resolved)


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("ties", {"density": 1.5}, r"^density \(--density\) must lie in \(0, 1\], got 1.5$"),
        ("pcb", {"clip": 0.5}, r"^clip \(--clip\) must lie in \[0, 0.5\), got 0.5$"),
        ("pcb", {"clip": -0.1}, r"^clip \(--clip\) must lie in \[0, 0.5\), got -0.1$"),
        ("pcb", {"clip": float("nan")}, r"^clip \(--clip\) must lie in \[0, 0.5\), got nan$"),
        ("tsv", {"keep": 0.0}, r"^keep \(--keep\) must lie in \(0, 1\], got 0.0$"),
        ("tsv", {"keep": 1.5}, r"^keep \(--keep\) must lie in \(0, 1\], got 1.5$"),
        (
            "ties",
            {"densty": 0.2, "sed": 1},
            r"^merge method 'ties' takes density, majority_sign, normalize; got densty, sed$",
        ),
        ("linear", {"density": 0.5}, r"^merge method 'linear' takes no parameters; got density$"),
    ],
)
def test_parameters_out_of_range_are_one_line(method, params, message):
    with pytest.raises(HoEError, match=message):
        get_method(method).resolve(params)


def test_parameters_at_their_bounds_are_accepted():
    assert get_method("ties").resolve({"density": 1.0})["density"] == 1.0
    assert (
        get_method("pcb").resolve({"clip": 0.0})["clip"] == 0.0
        and get_method("pcb").resolve({"clip": 0.49})["clip"] == 0.49
    )
    assert get_method("tsv").resolve({"keep": 1.0})["keep"] == 1.0
    with pytest.raises(
        HoEError, match=r"^unknown merge method 'slerp' \(choose from linear, ties, dare_linear, dare_ties, pcb, tsv\)$"
    ):
        get_method("slerp")


def test_sign_election_refuses_an_unknown_rule():
    from hoe.merging.merge_methods import elect_sign

    with pytest.raises(HoEError, match=r"^majority sign must be 'total' or 'count', got 'max'$"):
        elect_sign(torch.tensor(DELTAS), torch.tensor(WEIGHTS), "max")


def test_trim_keeps_exactly_the_share_asked_for():
    from hoe.merging.merge_methods import magnitude_trim

    delta = torch.tensor([[0.5, -3.0], [2.0, -0.1]])
    assert torch.equal(magnitude_trim(delta, 1.0), delta)
    assert magnitude_trim(delta, 0.25).tolist() == [[0.0, -3.0], [0.0, 0.0]]  # one entry: the largest magnitude
    assert magnitude_trim(delta, 0.1).tolist() == [[0.0, 0.0], [0.0, 0.0]]  # rounds to none


def test_order_statistics_of_half_precision_rows():
    """bfloat16 has no numpy type: selection falls back to torch (the numpy path is for float32/64)."""
    from hoe.merging.merge_methods import _kth_smallest

    values = torch.tensor([3.0, 1.0, 2.0, 5.0], dtype=torch.bfloat16)
    assert float(_kth_smallest(values, 2)) == 2.0 and _kth_smallest(values, 2).dtype == torch.bfloat16
    assert float(_kth_smallest(values.float(), 4)) == 5.0 and _kth_smallest(values.double(), 1).dtype == torch.float64


def test_minmax_scales_rows_and_leaves_constant_rows_at_zero():
    from hoe.merging.merge_methods import _minmax

    rows = torch.tensor([[0.2, 0.4, 0.6], [3.0, 3.0, 3.0], [0.0, 10.0, 5.0]])
    torch.testing.assert_close(_minmax(rows), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.5]]))


@pytest.mark.parametrize("name", ["ties", "dare_ties"])
def test_a_zero_weight_expert_has_no_vote_under_count(name):
    """With majority 'count', only experts with a positive weight vote: the two voters disagree
    everywhere, so every vote ties and elects + (mergekit's rule), keeping the positive one of each
    pair; the zero-weight third expert, negative everywhere, must not swing it to −."""
    deltas = np.stack([DELTAS[0], -DELTAS[0], -5 * np.abs(DELTAS[2]) - 1.0])
    weights = np.array([0.6, 0.4, 0.0])
    got = run(name, deltas=deltas, weights=weights, density=1.0, majority_sign="count", normalize=True)
    np.testing.assert_allclose(got, np.abs(DELTAS[0]), atol=1e-12)


def test_trimming_with_tied_magnitudes_keeps_exactly_the_share():
    """bf16-born deltas tie often. Magnitudes 0.875, four of 0.5, 0.25, 0.25, 0.125: density 0.5
    keeps 4 (0.875 and the first three 0.5 in order), density 0.25 keeps 2 (0.875 and the first 0.5)."""
    from hoe.merging.merge_methods import magnitude_trim

    delta = torch.tensor([[0.5, -0.5, 0.25, 0.875], [-0.5, 0.125, 0.5, -0.25]])  # exact in binary
    assert magnitude_trim(delta, 0.5).tolist() == [[0.5, -0.5, 0.0, 0.875], [-0.5, 0.0, 0.0, 0.0]]
    assert magnitude_trim(delta, 0.25).tolist() == [[0.5, 0.0, 0.0, 0.875], [0.0, 0.0, 0.0, 0.0]]
    for density in (0.25, 0.5, 0.75):
        np.testing.assert_array_equal(magnitude_trim(delta, density).numpy(), reference_trim(delta.numpy(), density))


def test_float32_deltas_merge_under_float64_weights():
    """hoe merge stacks float32 deltas and keeps its weights in float64."""
    deltas, weights = torch.tensor(DELTAS, dtype=torch.float32), torch.tensor(WEIGHTS)
    for name in ("linear", "ties", "dare_linear", "pcb", "tsv"):
        method = get_method(name)
        out = method.function(deltas, weights, generator=np.random.default_rng(0), **method.resolve({}))
        assert out.dtype == torch.float32 and out.shape == (12, 10), name


def test_pcb_with_a_silent_task_and_with_small_scores():
    """A task whose delta is zero scores a constant row: it gets scale 0, not a division by zero;
    and rows whose score span is below 1 are still rescaled to [0, 1]."""
    silent = np.stack([DELTAS[0], np.zeros_like(DELTAS[0])])
    weights = np.array([0.5, 0.5])
    merged = run("pcb", deltas=silent, weights=weights, density=0.5, clip=0.0)
    np.testing.assert_allclose(merged, reference_pcb(silent, weights, 0.5, 0.0), atol=1e-10)
    assert np.isfinite(merged).all()
    small = DELTAS * 1e-3
    np.testing.assert_allclose(
        run("pcb", deltas=small, density=0.5, clip=0.0), reference_pcb(small, WEIGHTS, 0.5, 0.0), atol=1e-12
    )


@pytest.mark.parametrize("shape", [(10, 12), (12, 10)])
def test_tsv_rank_follows_the_smaller_side(shape):
    deltas = RNG.normal(size=(3, *shape))
    expected = reference_tsv(deltas, WEIGHTS, 0.25)  # 2 triplets of the smaller side 10 (3 of the larger 12)
    np.testing.assert_allclose(run("tsv", deltas=deltas, keep=0.25), expected, atol=1e-10)
    one = reference_tsv(deltas, WEIGHTS, 0.05)  # 0.05 · 10 rounds down to 0: at least one triplet each
    np.testing.assert_allclose(run("tsv", deltas=deltas, keep=0.05), one, atol=1e-10)


def test_tsv_factored_keep_and_default():
    """On rank-2 factors: keep = 0.1 of 10 keeps one triplet per task (below the factors' rank);
    the default keeps 1/3 of 10 = 3 (more than the factors hold: all of them)."""
    factors = _low_rank_inputs()
    dense = torch.stack([b @ a for b, a in factors])
    weights = torch.tensor(WEIGHTS)
    B, A = tsv_factored(factors, weights, keep=0.1)
    torch.testing.assert_close(B @ A, get_method("tsv").function(dense, weights, keep=0.1))
    B, A = tsv_factored(factors, weights)
    assert B.shape[1] == 6  # 3 tasks × their 2 non-zero triplets
    torch.testing.assert_close(
        B @ A, get_method("tsv").function(dense, weights, keep=0.2)
    )  # the same two triplets each
