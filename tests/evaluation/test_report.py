"""The Pareto report's numbers on a hand-made run (no model): hypervolumes against the one shared
reference point, Tchebycheff gaps, wins and means, all worked out by hand below."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoe.evaluation.report import markdown, methods_table, summarise, verdict

PREFERENCES = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
MEANS = {
    "hoe": [[0.9, 0.1], [0.6, 0.6], [0.1, 0.9]],
    "soup": [[0.8, 0.2], [0.5, 0.5], [0.2, 0.95]],
}


def point(method: str, preference, mean, label: str) -> dict:
    return {
        "method": method,
        "label": label,
        "preference": preference,
        "mean": mean,
        "se": [0.0, 0.0],
        "prompts": 4,
        "tokens": 40,
        "tokens_per_response": 10.0,
        "wall_s": 2.0,
        "s_per_token": 0.05,
        "setup_s": None,
        "truncated_prompts": 0,
    }


def hand_made_run() -> tuple[dict, list[dict]]:
    run = {
        "objectives": ["a", "b"],
        "scorers": {"a": "x", "b": "y"},
        "methods": ["hoe", "soup"],
        "preferences": PREFERENCES,
    }
    points = [
        point(m, lam, mean, f"{lam[0]:g}-{lam[1]:g}")
        for m, means in MEANS.items()
        for lam, mean in zip(PREFERENCES, means)
    ]
    return run, points


def test_summarise_by_hand():
    """Guards: a method's hypervolume against its own reference point; every method 'winning' every λ;
    the gap's range scaling."""
    run, points = hand_made_run()
    results = summarise(run, points)
    # shared reference: per objective min − 10% of the range: a 0.1 − 0.08 = 0.02, b 0.1 − 0.085 = 0.015;
    # ideal (0.9, 0.95)
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
    assert verdict(results).startswith(
        f"**HoE's hypervolume ({results['methods']['hoe']['hypervolume']:.4g}) is below soup ("
    )


HAND_SCORES = """
def first(prompts, responses):
    return [float(r.split()[0]) for r in responses]


def second(prompts, responses):
    return [float(r.split()[1]) for r in responses]
"""


def write_cached_run(out, monkeypatch, run: dict, rows_of: dict) -> None:
    """A cached evaluation run as ``hoe evaluate`` leaves it: run.json and one JSONL of generations
    per (method, label) in ``rows_of``, scored by the py: scorers of HAND_SCORES."""
    import json

    (out.parent / "hand_scores.py").write_text(HAND_SCORES)
    monkeypatch.syspath_prepend(str(out.parent))
    (out / "generations").mkdir(parents=True)
    (out / "run.json").write_text(
        json.dumps({**run, "scorers": {"a": "py:hand_scores:first", "b": "py:hand_scores:second"}})
    )
    for (method, label), rows in rows_of.items():
        (out / "generations" / method).mkdir(exist_ok=True)
        (out / "generations" / method / f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(out, monkeypatch) -> None:
    """The hand-made run cached, each response carrying its two scores (read back by a py: scorer),
    two prompts per point: each mean of the hand-made run is the mean of (mean − 0.1, mean + 0.1)
    on objective a."""
    run, points = hand_made_run()
    run = {
        **run,
        "methods": ["hoe", "soup", "base"],
        "points": [{"method": p["method"], "label": p["label"], "preference": p["preference"]} for p in points]
        + [{"method": "base", "label": "base", "preference": None}],
        "prompts": {"spec": "file:x", "split": "heldout", "count": 2},
        "decoding": {"do_sample": False, "max_new_tokens": 5, "batch_size": 2, "seed": 0},
    }
    means = {(p["method"], p["label"]): p["mean"] for p in points} | {("base", "base"): [0.3, 0.3]}
    rows_of = {
        (method, label): [
            {"prompt": f"q{i}", "response": f"{a + d} {b}", "tokens": 5, "wall_s": 0.2 if method == "base" else 0.25}
            for i, d in enumerate((-0.1, 0.1))
        ]
        for (method, label), (a, b) in means.items()
    }
    write_cached_run(out, monkeypatch, run, rows_of)


def assert_matches_golden(out, prefix: str = "") -> None:
    """results.json, results.csv and report.md of ``out`` against GOLDEN/<prefix><name>, paths
    replaced by OUT. A deliberate change of format updates the files: HOE_UPDATE_GOLDEN=1."""
    import os

    for name in ("results.json", "results.csv", "report.md"):
        produced = (out / name).read_text().replace(str(out), "OUT")
        golden = GOLDEN / f"{prefix}{name}"
        if os.environ.get("HOE_UPDATE_GOLDEN"):
            golden.write_text(produced)
        assert produced == golden.read_text(), name


def test_build_report_writes_every_file_from_cached_generations(tmp_path, monkeypatch):
    """results.json, results.csv, report.md and fronts.png from generations alone, with the means,
    standard errors and costs worked out by hand (0.25 s per 5 tokens against the base's 0.2)."""
    import json

    from matplotlib.image import imread

    from hoe.evaluation import build_report

    out = tmp_path / "run"
    write_run(out, monkeypatch)
    results = build_report(out)
    hoe_first = results["points"][0]
    assert hoe_first["mean"] == pytest.approx([0.9, 0.1]) and hoe_first["se"] == pytest.approx([0.1, 0.0])
    assert hoe_first["prompts"] == 2 and hoe_first["tokens"] == 10 and hoe_first["s_per_token"] == pytest.approx(0.05)
    assert hoe_first["cost_vs_base"] == pytest.approx(1.25) and results["methods"]["hoe"][
        "cost_vs_base"
    ] == pytest.approx(1.25)
    assert (
        results["methods"]["base"]["cost_vs_base"] == pytest.approx(1.0)
        and "tchebycheff_wins" not in results["methods"]["base"]
    )
    assert results["methods"]["hoe"]["hypervolume"] == pytest.approx(
        0.0708 + 0.2925 + 0.0255
    )  # the base at (0.3, 0.3) moves nothing
    assert json.loads((out / "results.json").read_text())["methods"] == json.loads(json.dumps(results["methods"]))
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert (
        csv_rows[0] == "method,label,lambda_a,lambda_b,a,b,se_a,se_b,prompts,"
        "tokens_per_response,s_per_token,wall_ratio_vs_base,setup_s"
    )
    assert csv_rows[1] == "hoe,1-0,1.0,0.0,0.9,0.1,0.1,0,2,5.00,0.05,1.250,"
    assert csv_rows[-1] == "base,base,,,0.3,0.3,0.1,0,2,5.00,0.04,1.000,"
    report = (out / "report.md").read_text()
    assert report.startswith(
        "# Pareto-front evaluation\n\nObjectives (scorer): a (py:hand_scores:first), b (py:hand_scores:second)."
    )
    assert "Prompts: 2 from `file:x` (heldout split); decoding: greedy, 5 new tokens, batch 2, seed 0" in report
    assert "Hypervolume reference point (shared by every method): (0.02, 0.015)" in report
    assert "| hoe | 1-0 | 0.900 ± 0.100 | 0.100 ± 0.000 | 5.0 | – |" in report
    assert "| soup | 3 | 0.3693 | 3 | +1.00 | 1 | 0.118 | 1.25× |" in report
    assert "| base | 1 | 0.0798 | 1 | – | – | – | 1.00× |" in report  # (0.3 − 0.02)·(0.3 − 0.015)
    assert "from the generation walls (taken at different times: a rough guide)" in report
    image = imread(out / "fronts.png")
    assert image.shape[:2] == (495, 605)  # one 5.5 × 4.5 in axes at 110 dpi


def test_report_of_a_missing_run_or_generation_is_one_line(tmp_path, monkeypatch):
    from hoe.errors import HoEError
    from hoe.evaluation import build_report

    with pytest.raises(HoEError, match="holds no evaluation run \\(run.json is missing\\)"):
        build_report(tmp_path)
    out = tmp_path / "run"
    write_run(out, monkeypatch)
    (out / "generations" / "soup" / "0.5-0.5.jsonl").unlink()
    with pytest.raises(HoEError, match="no generations for soup at 0.5-0.5 in .*: run hoe evaluate to make them"):
        build_report(out)


@pytest.mark.parametrize("objectives, size", [(3, (495, 1815)), (4, (1485, 1815))])
def test_fronts_of_three_or_more_objectives_are_a_matrix_of_projections(tmp_path, objectives, size):
    """Three objectives: one row of the three pairwise projections; four: the lower triangle of a
    3 × 3 grid (six projections), every panel labelled with its pair."""
    from matplotlib.image import imread

    from hoe.evaluation.report import plot_fronts

    names = [f"o{i}" for i in range(objectives)]
    corners = [[float(i == k) for i in range(objectives)] for k in range(objectives)]
    points = [
        {"method": "hoe", "label": str(k), "preference": lam, "mean": [0.5 + 0.1 * v for v in lam]}
        for k, lam in enumerate(corners)
    ]
    points.append({"method": "base", "label": "base", "preference": None, "mean": [0.5] * objectives})
    results = {"objectives": names, "methods": {"hoe": {}, "base": {}}, "points": points}
    import matplotlib.pyplot as plt

    points.append({"method": "custom", "label": "x", "preference": corners[0], "mean": [0.4] * objectives})
    results["methods"]["custom"] = {}
    figures = []
    close = plt.close
    plt.close = lambda figure=None: figures.append(figure) or close(figure)
    try:
        plot_fronts(results, tmp_path / "fronts.png")
    finally:
        plt.close = close
    assert imread(tmp_path / "fronts.png").shape[:2] == size
    assert not list(tmp_path.glob(".*.tmp.png"))
    visible = [a for a in figures[0].axes if a.get_visible()]
    # one legend row (3 labels) reserved above the panels: 7% of the height over the number of grid rows
    assert figures[0].subplotpars.top <= 1 - 0.07 / (1 if objectives <= 3 else objectives - 1) + 1e-9
    assert figures[0].subplotpars.top > 0.8 and figures[0].subplotpars.left < 0.2
    pairs = [(i, j) for i in range(objectives) for j in range(objectives) if i < j]
    assert sorted((a.get_xlabel(), a.get_ylabel()) for a in visible) == sorted((f"o{i}", f"o{j}") for i, j in pairs)
    if objectives == 4:  # panel (i, j) sits at row j − 1, column i: the lower triangle of the grid
        grid = [[figures[0].axes[r * 3 + c].get_visible() for c in range(3)] for r in range(3)]
        assert grid == [[True, False, False], [True, True, False], [True, True, True]]
        assert (figures[0].axes[3].get_xlabel(), figures[0].axes[3].get_ylabel()) == ("o0", "o2")
    for axes in visible:
        for line in axes.get_lines():  # projections of a simplex lattice: markers only, a little transparent
            assert line.get_linestyle() == "None" and line.get_alpha() == 0.8
        custom = [line for line in axes.get_lines() if line.get_label() == "custom"][0]
        assert (custom.get_color(), custom.get_marker()) == ("C7", "o")  # a method without a style of its own


GOLDEN = Path(__file__).parent / "golden"


def test_report_files_match_the_golden_run(tmp_path, monkeypatch):
    """The whole of results.json, results.csv and report.md for the hand-made run with a side-by-side
    timing, a merge setup time, truncated prompts and a given reference point, against files
    checked by eye once (the numbers in them are the hand-computed ones of the tests above).
    A deliberate change of format updates the files: HOE_UPDATE_GOLDEN=1 pytest this test."""
    import json

    from hoe.evaluation import build_report

    out = tmp_path / "run"
    write_run(out, monkeypatch)
    (out / "timing.json").write_text(
        json.dumps(
            {
                "rounds": 3,
                "batch": 4,
                "new_tokens": 8,
                "methods": {
                    "hoe": {"label": "0.5-0.5", "s_per_token": 0.011, "cost_vs_base": 1.1},
                    "soup": {"label": "0.5-0.5", "s_per_token": 0.01, "cost_vs_base": None},
                    "base": {"label": "base", "s_per_token": 0.01, "cost_vs_base": 1.0},
                },
            }
        )
    )
    (out / "generations" / "soup" / "0.5-0.5.meta.json").write_text(
        json.dumps({"setup_s": 2.5, "truncated_prompts": 1})
    )
    results = build_report(out, reference=[0.0, 0.0])
    assert results["methods"]["hoe"]["cost_vs_base"] == 1.1
    assert results["methods"]["hoe"]["cost_source"] == "side-by-side timing at 0.5-0.5"
    assert results["methods"]["soup"]["cost_source"] == "generation walls"  # no side-by-side ratio: the walls stand
    assert results["methods"]["soup"]["setup_s"] == 2.5 and results["truncated_prompts"] == 1
    assert_matches_golden(out)


def test_report_of_hoe_below_one_peer_and_tied_with_another(tmp_path, monkeypatch):
    """The other branches of the report, golden as above: sampled decoding and the run's settings
    recorded, a λ with thirds, soup above HoE, rs exactly equal to HoE (a tie counts as 'at least'),
    a base answered with a single one-token row."""
    from hoe.evaluation import build_report

    out = tmp_path / "run"
    preferences = [[1.0, 0.0], [1 / 3, 2 / 3], [0.0, 1.0]]
    hoe = [[0.9, 0.1], [0.5, 0.7], [0.1, 0.9]]
    means = {"hoe": hoe, "rs": hoe, "soup": [[a + 0.2, b + 0.2] for a, b in hoe]}
    points, rows_of = [], {}
    for method, values in means.items():
        for lam, (a, b) in zip(preferences, values):
            label = "-".join(f"{v:.3g}" for v in lam)
            points.append({"method": method, "label": label, "preference": lam})
            rows_of[(method, label)] = [
                {"prompt": "q0", "response": f"{a} {b}", "tokens": 3, "wall_s": 0.3},
                {"prompt": "q1", "response": f"{a} {b}", "tokens": 3, "wall_s": 0.3},
            ]
    points.append({"method": "base", "label": "base", "preference": None})
    rows_of[("base", "base")] = [{"prompt": "q0", "response": "0.3 0.3", "tokens": 1, "wall_s": 0.2}]
    run = {
        "objectives": ["a", "b"],
        "methods": ["hoe", "soup", "rs", "base"],
        "preferences": preferences,
        "points": points,
        "prompts": {"spec": "packaged:x", "split": "test", "count": 2},
        "decoding": {"do_sample": True, "max_new_tokens": 3, "batch_size": 2, "seed": 7},
        "task_vectors": "lora",
        "merge": {"method": "pcb", "params": {"density": 0.2}},
        "device": "cpu",
    }
    write_cached_run(out, monkeypatch, run, rows_of)
    results = build_report(out)
    assert (out / "scores.sqlite").is_file()  # scores are cached beside the run
    assert results["points"][-1]["se"] == [0.0, 0.0] and results["points"][-1]["tokens_per_response"] == 1.0
    assert_matches_golden(out, prefix="below-")


def test_verdict_names_every_peer_on_each_side():
    methods = {
        "hoe": {"hypervolume": 0.5},
        "p1": {"hypervolume": 0.7},
        "p2": {"hypervolume": 0.6},
        "p3": {"hypervolume": 0.5},
        "p4": {"hypervolume": 0.4},
        "base": {"hypervolume": 0.9},
    }
    assert (
        verdict({"methods": methods})
        == "**HoE's hypervolume (0.5) is below p1 (0.7), p2 (0.6)**; at least that of p3, p4."
    )
    top = {k: v for k, v in methods.items() if k not in ("p1", "p2")}
    assert verdict({"methods": top}) == "**HoE's hypervolume (0.5) is at least that of every peer here (p3, p4).**"
    only = {"hoe": {"hypervolume": 0.5}, "p1": {"hypervolume": 0.7}}
    assert verdict({"methods": only}) == "**HoE's hypervolume (0.5) is below p1 (0.7)**."


def test_summary_without_hoe_settings_or_enough_points():
    from hoe.evaluation.report import follows_preference, markdown

    run, points = hand_made_run()
    two = [p for p in points if p["preference"] != [0.5, 0.5]]
    results = summarise({**run, "preferences": [[1.0, 0.0], [0.0, 1.0]]}, two)
    assert results["methods"]["hoe"]["controllability_mean"] is None  # two points: no rank correlation
    assert "Prompts: None from `None` (None split); decoding: greedy, None new tokens" in markdown(results)
    no_hoe = summarise({**run, "methods": ["soup"]}, [p for p in points if p["method"] == "soup"])
    assert verdict(no_hoe) == ""
    assert follows_preference("my-own-method") and not follows_preference("base") and follows_preference("rs")


def test_fronts_plot_each_method_in_its_style_and_lambda_order(monkeypatch, tmp_path):
    """Two objectives: one line per method that follows λ, joined in λ order, in its own colour,
    marker and line style; fixed models (base, experts) as lone markers; axes named after the
    objectives; a legend with every method."""
    import matplotlib.pyplot as plt

    from hoe.evaluation.report import plot_fronts

    run, points = hand_made_run()
    results = summarise(
        {**run, "methods": ["hoe", "soup", "base"]}, points[::-1] + [point("base", None, [0.3, 0.3], "base")]
    )
    figures = []
    monkeypatch.setattr(plt, "close", lambda figure=None: figures.append(figure))
    plot_fronts(results, tmp_path / "nested" / "fronts.png")  # folders are made as needed
    (ax,) = [a for a in figures[0].axes if a.get_visible()]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"hoe", "soup", "base"}
    hoe, soup, base = lines["hoe"], lines["soup"], lines["base"]
    # sorted by λ_a − λ_b: (0, 1), (.5, .5), (1, 0)
    assert list(hoe.get_xdata()) == [0.1, 0.6, 0.9] and list(hoe.get_ydata()) == [0.9, 0.6, 0.1]
    assert (hoe.get_color(), hoe.get_marker(), hoe.get_linestyle()) == ("C3", "o", "-")
    assert (soup.get_color(), soup.get_marker(), soup.get_linestyle()) == ("C0", "s", "--")
    assert (base.get_color(), base.get_marker(), base.get_linestyle()) == ("0.4", "X", "None")
    assert hoe.get_markersize() == 8 and base.get_markersize() == 12 and hoe.get_alpha() == 1.0
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")
    legend = figures[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["hoe", "soup", "base"]
    assert legend._ncols == 3 and not legend.get_frame_on() and legend._loc == 9  # 9: upper center
    assert figures[0].subplotpars.top <= 0.93  # room left above the axes for the legend
    assert (tmp_path / "nested" / "fronts.png").stat().st_size > 0


def test_hoe_against_each_peer_on_paired_resamples_of_the_prompts():
    """A peer that HoE beats by 0.1 on every prompt is beyond noise (hypervolume and Tchebycheff gap);
    a peer equal on average whose per-prompt differences cancel is within noise; a peer that answered
    other prompts pairs with nothing and is left out; one that answered fewer preferences has no
    gap comparison; the base (one fixed point) is no peer."""
    import numpy as np

    run, _ = hand_made_run()
    prompts = [f"q{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    hoe = rng.uniform(0.3, 0.9, size=(3, 30, 2))
    swing = np.where(np.arange(30) % 2 == 0, 0.05, -0.05)[None, :, None]  # per prompt ±0.05, mean 0
    values = {"hoe": hoe, "worse": hoe - [0.1, 0.0], "even": hoe + swing, "elsewhere": hoe - 0.2}
    run["methods"] = [*values, "base"]
    points, per_prompt = [], {}
    for method, rows in values.items():
        for lam, per_point in zip(PREFERENCES, rows):
            label = f"{lam[0]:g}-{lam[1]:g}"
            points.append(point(method, lam, per_point.mean(0).tolist(), label))
            asked = [f"other{i}" for i in range(30)] if method == "elsewhere" else prompts
            per_prompt[(method, label)] = (asked, per_point)
    points.append(point("partial", PREFERENCES[0], hoe[0].mean(0).tolist(), "1-0"))
    per_prompt[("partial", "1-0")] = (prompts, hoe[0])
    points.append(point("base", None, [0.3, 0.3], "base"))
    per_prompt[("base", "base")] = (prompts, np.full((30, 2), 0.3))
    run["methods"].insert(-1, "partial")
    results = summarise(run, points, per_prompt=per_prompt)
    comparisons = results["comparisons"]
    assert comparisons["prompts"] == 30 and comparisons["resamples"] == 2000
    assert set(comparisons["peers"]) == {"worse", "even", "partial"}
    assert "gap_difference" not in comparisons["peers"]["partial"]  # one λ of three: mean gaps not comparable
    worse, even = comparisons["peers"]["worse"], comparisons["peers"]["even"]
    assert worse["beyond_noise"] and worse["difference_ci95"][0] > 0 and worse["ratio_ci95"][0] > 1
    hypervolumes = {m: results["methods"][m]["hypervolume"] for m in ("hoe", "worse")}
    assert worse["difference"] == pytest.approx(hypervolumes["hoe"] - hypervolumes["worse"])
    assert worse["ratio"] == pytest.approx(hypervolumes["hoe"] / hypervolumes["worse"])
    assert not even["beyond_noise"] and even["difference_ci95"][0] < 0 < even["difference_ci95"][1]
    gaps = {m: results["methods"][m]["tchebycheff_mean_gap"] for m in ("hoe", "worse", "even")}
    assert worse["gap_difference"] == pytest.approx(gaps["hoe"] - gaps["worse"]) and worse["gap_difference"] < 0
    assert worse["gap_difference_ci95"][1] < 0  # HoE nearer the ideal point on every resample
    assert even["gap_difference"] == pytest.approx(gaps["hoe"] - gaps["even"])
    assert even["gap_difference_ci95"][0] < 0 < even["gap_difference_ci95"][1]
    assert verdict(results).startswith("**HoE's hypervolume") and verdict(results).endswith(
        "Paired bootstrap over the 30 prompts (95%): the difference is beyond noise against worse, partial; "
        "within noise against even."
    )
    report = markdown(results)
    assert "| peer | hypervolume, HoE ÷ peer | 95% interval | HoE − peer | 95% interval | | mean gap" in report
    low, high = worse["gap_difference_ci95"]
    assert f"| {worse['gap_difference']:+.3f} | [{low:+.3f}, {high:+.3f}] | beyond noise |" in report
    assert f"| worse | {worse['ratio']:.2f} | [{worse['ratio_ci95'][0]:.2f}, " in report
    assert summarise(run, points)["comparisons"] is None  # no per-prompt rewards: no intervals, no claim


def test_a_ratio_without_interval_is_a_dash_and_said_why():
    from hoe.evaluation.report import comparisons_table

    peer = {"difference": 0.1, "difference_ci95": [0.02, 0.2], "ratio": 3.0, "ratio_ci95": None, "beyond_noise": True}
    lines = comparisons_table({"prompts": 8, "resamples": 2000, "peers": {"rs": peer}})
    assert "| rs | 3.00 | – | +0.1 | [+0.02, +0.2] | beyond noise | – | – | – |" in lines
    assert lines[-1] == "(–: the peer's hypervolume is 0 on some resample, so only the difference has an interval.)"
    assert comparisons_table(None) == []
