"""The Pareto report's numbers on a hand-made run (no model): hypervolumes against the one shared
reference point, Tchebycheff gaps, wins and means, all worked out by hand below."""

from __future__ import annotations

import pytest

from hoe.evaluation.report import methods_table, summarise, verdict

PREFERENCES = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
MEANS = {
    "hoe": [[0.9, 0.1], [0.6, 0.6], [0.1, 0.9]],
    "soup": [[0.8, 0.2], [0.5, 0.5], [0.2, 0.95]],
}


def point(method: str, preference, mean, label: str) -> dict:
    return {"method": method, "label": label, "preference": preference, "mean": mean, "se": [0.0, 0.0], "prompts": 4,
            "tokens": 40, "wall_s": 2.0, "s_per_token": 0.05, "setup_s": None, "truncated_prompts": 0}


def hand_made_run() -> tuple[dict, list[dict]]:
    run = {"objectives": ["a", "b"], "scorers": {"a": "x", "b": "y"}, "methods": ["hoe", "soup"], "preferences": PREFERENCES}
    points = [point(m, lam, mean, f"{lam[0]:g}-{lam[1]:g}") for m, means in MEANS.items() for lam, mean in zip(PREFERENCES, means)]
    return run, points


def test_summarise_by_hand():
    """Guards: a method's hypervolume against its own reference point; every method 'winning' every λ;
    the gap's range scaling."""
    run, points = hand_made_run()
    results = summarise(run, points)
    # shared reference: per objective min − 10% of the range: a 0.1 − 0.08 = 0.02, b 0.1 − 0.085 = 0.015; ideal (0.9, 0.95)
    assert results["reference_point"] == pytest.approx([0.02, 0.015])
    assert results["ideal_point"] == pytest.approx([0.9, 0.95])
    hoe, soup = results["methods"]["hoe"], results["methods"]["soup"]
    # staircases above (0.02, 0.015): hoe 0.08·0.885 + 0.5·0.585 + 0.3·0.085; soup 0.18·0.935 + 0.3·0.485 + 0.3·0.185
    assert hoe["hypervolume"] == pytest.approx(0.0708 + 0.2925 + 0.0255)
    assert soup["hypervolume"] == pytest.approx(0.1683 + 0.1455 + 0.0555)
    # gaps max_i λ_i (z*_i − R_i) / (z*_i − ref_i), ranges (0.88, 0.935):
    #   (1, 0):     hoe 0,                      soup 0.1/0.88 = 0.113636        → hoe
    #   (.5, .5):   hoe max(.15/.88, .175/.935), soup max(.2/.88, .225/.935)     → hoe
    #   (0, 1):     hoe 0.05/0.935 = 0.053476,   soup 0                          → soup
    hoe_gaps = [0.0, max(0.15 / 0.88, 0.175 / 0.935), 0.05 / 0.935]
    soup_gaps = [0.1 / 0.88, max(0.2 / 0.88, 0.225 / 0.935), 0.0]
    table = results["tchebycheff"]
    assert [row["gaps"]["hoe"] for row in table] == pytest.approx(hoe_gaps)
    assert [row["gaps"]["soup"] for row in table] == pytest.approx(soup_gaps)
    assert hoe["tchebycheff_wins"] == 2 and soup["tchebycheff_wins"] == 1
    assert hoe["tchebycheff_mean_gap"] == pytest.approx(sum(hoe_gaps) / 3)
    assert soup["tchebycheff_mean_gap"] == pytest.approx(sum(soup_gaps) / 3)
    assert hoe["nondominated"] == 3 and soup["nondominated"] == 3
    assert hoe["controllability"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert "HoE's hypervolume (0.3888) is at least that of every peer here (soup)" in verdict(results)
    assert "| hoe | 3 | 0.3888 | 3 | +1.00 | 2 | 0.080 |" in methods_table(results)


def test_ties_count_for_each_and_a_given_reference_is_used():
    run, points = hand_made_run()
    for p in points:
        if p["method"] == "soup" and p["preference"] == [1.0, 0.0]:
            p["mean"] = [0.9, 0.05]  # equal gap 0 with hoe's (0.9, 0.1) at λ = (1, 0)
    results = summarise(run, points, reference=[0.0, 0.0])
    assert results["reference_point"] == [0.0, 0.0]
    assert results["tchebycheff"][0]["gaps"] == {"hoe": 0.0, "soup": 0.0}
    assert results["methods"]["hoe"]["tchebycheff_wins"] == 2 and results["methods"]["soup"]["tchebycheff_wins"] == 2
    # hoe above (0, 0): 0.1·0.9 + 0.5·0.6 + 0.3·0.1
    assert results["methods"]["hoe"]["hypervolume"] == pytest.approx(0.09 + 0.30 + 0.03)


def test_a_peer_above_hoe_is_named_in_the_verdict():
    run, points = hand_made_run()
    for p in points:
        if p["method"] == "soup":
            p["mean"] = [v + 0.2 for v in p["mean"]]
    results = summarise(run, points)
    assert verdict(results).startswith(f"**HoE's hypervolume ({results['methods']['hoe']['hypervolume']:.4g}) is below soup (")
