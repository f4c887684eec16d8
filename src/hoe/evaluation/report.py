"""Scores, metrics and the report of an evaluation, rebuilt from cached generations alone (no
language model loads): ``results.json``, ``results.csv``, ``report.md`` and ``fronts.png``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from hoe.errors import HoEError
from hoe.evaluation.methods import METHODS
from hoe.evaluation.metrics import (
    bootstrap_means,
    controllability,
    hypervolume,
    ideal_point,
    nondominated,
    reference_point,
    resampled_hypervolumes,
    tchebycheff_gap,
    tchebycheff_gaps,
)
from hoe.rewards.scoring import ScoreCache, score_objectives
from hoe.utils.io import write_json, write_text

RUN_FILE = "run.json"
BOOTSTRAP_RESAMPLES = 2000  # paired resamples of the prompts behind every interval between methods


def follows_preference(method: str) -> bool:
    """Whether a method gives one point per λ (not a fixed model such as the base or an expert)."""
    return METHODS[method].per_preference if method in METHODS else True


def build_report(out: str | Path, reference: list[float] | None = None, progress: bool = False) -> dict:
    """Score every cached generation of the run in ``out`` and write its results and report."""
    out = Path(out)
    run_file = out / RUN_FILE
    if not run_file.is_file():
        raise HoEError(f"'{out}' holds no evaluation run ({RUN_FILE} is missing)")
    run = json.loads(run_file.read_text())
    cache = ScoreCache(out / "scores.sqlite")
    points, per_prompt = [], {}
    for point in run["points"]:
        rows, meta, values = scored_point(out, point, run, cache)
        per_prompt[(point["method"], point["label"])] = ([r["prompt"] for r in rows], values)
        tokens = sum(r["tokens"] for r in rows)
        wall = sum(r["wall_s"] for r in rows)
        points.append(
            {
                **point,
                "mean": values.mean(0).tolist(),
                "se": _standard_error(values).tolist(),
                "prompts": len(rows),
                "tokens": tokens,
                "tokens_per_response": tokens / max(1, len(rows)),
                "wall_s": wall,
                "s_per_token": wall / max(1, tokens),
                "setup_s": meta.get("setup_s"),
                "truncated_prompts": meta.get("truncated_prompts", 0),
            }
        )
    timing_file = out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
    results = summarise(run, points, reference, timing, per_prompt)
    _write(out, results)
    return results


def scored_point(
    out: Path, point: dict, run: dict, cache: ScoreCache | None = None
) -> tuple[list[dict], dict, np.ndarray]:
    """One point's cached generations, their metadata, and their rewards (prompts × objectives)."""
    rows, meta = _read_job(out, point)
    objectives, scorers = run["objectives"], run["scorers"]
    scores = score_objectives(
        [scorers[o] for o in objectives], [r["prompt"] for r in rows], [r["response"] for r in rows], cache=cache
    )
    return rows, meta, np.asarray([scores[scorers[o]] for o in objectives], dtype=np.float64).T


def _read_job(out: Path, point: dict) -> tuple[list[dict], dict]:
    path = out / "generations" / point["method"] / f"{point['label']}.jsonl"
    if not path.is_file():
        raise HoEError(
            f"no generations for {point['method']} at {point['label']} in '{out}': run hoe evaluate to make them"
        )
    meta_path = path.with_suffix(".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()], meta


def _standard_error(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return np.zeros(values.shape[1])
    return values.std(0, ddof=1) / math.sqrt(len(values))


def summarise(
    run: dict,
    points: list[dict],
    reference: list[float] | None = None,
    timing: dict | None = None,
    per_prompt: dict[tuple[str, str], tuple[list[str], np.ndarray]] | None = None,
) -> dict:
    """Per-method metrics over the scored points; one reference point shared by every method.
    Cost ratios come from the side-by-side timing (``timing``) when there is one, else from the
    generation walls (taken at different times: only a rough guide). With every point's
    per-prompt rewards (``per_prompt``: (method, label) → (prompts, prompts × objectives)), HoE's
    hypervolume is compared with each peer's on paired bootstrap resamples of the prompts."""
    objectives = run["objectives"]
    matrix = np.asarray([p["mean"] for p in points])
    ref = np.asarray(reference, dtype=np.float64) if reference is not None else reference_point(matrix)
    ideal = ideal_point(matrix)
    base = [p for p in points if p["method"] == "base"]
    base_cost = base[0]["s_per_token"] if base else None
    for p in points:
        p["cost_vs_base"] = p["s_per_token"] / base_cost if base_cost else None
    per_preference = [m for m in run["methods"] if follows_preference(m) and any(p["method"] == m for p in points)]
    gaps = _tchebycheff(points, per_preference, run["preferences"], ideal, ref)
    methods = {}
    for name in run["methods"]:
        mine = [p for p in points if p["method"] == name]
        values = np.asarray([p["mean"] for p in mine])
        wall, tokens = sum(p["wall_s"] for p in mine), sum(p["tokens"] for p in mine)
        entry = {
            "points": len(mine),
            "hypervolume": hypervolume(values, ref),
            "nondominated": int(nondominated(values).sum()),
            "s_per_token": wall / max(1, tokens),
            "cost_vs_base": (wall / max(1, tokens)) / base_cost if base_cost else None,
            "cost_source": "generation walls",
            "setup_s": sum(p["setup_s"] or 0.0 for p in mine),
        }
        if name in per_preference:
            rho = controllability(np.asarray([p["preference"] for p in mine]), values)
            known = [r for r in rho if r is not None]
            entry["controllability"] = dict(zip(objectives, rho))
            entry["controllability_mean"] = sum(known) / len(known) if known else None
            entry["tchebycheff_wins"] = gaps["wins"][name]
            entry["tchebycheff_mean_gap"] = gaps["mean"][name]
        timed = (timing or {}).get("methods", {}).get(name)
        if timed is not None and timed.get("cost_vs_base") is not None:
            entry.update(cost_vs_base=timed["cost_vs_base"], cost_source=f"side-by-side timing at {timed['label']}")
        methods[name] = entry
    return {
        "timing": timing,
        "objectives": objectives,
        "scorers": run["scorers"],
        "reference_point": ref.tolist(),
        "ideal_point": ideal.tolist(),
        "settings": {k: run[k] for k in ("prompts", "decoding", "task_vectors", "merge", "device") if k in run},
        "truncated_prompts": max((p["truncated_prompts"] for p in points), default=0),
        "methods": methods,
        "points": points,
        "tchebycheff": gaps["per_preference"],
        "comparisons": paired_comparisons(points, per_prompt or {}, per_preference, ref, ideal, methods),
    }


def paired_comparisons(
    points: list[dict],
    per_prompt: dict[tuple[str, str], tuple[list[str], np.ndarray]],
    per_preference: list[str],
    ref: np.ndarray,
    ideal: np.ndarray,
    methods: dict[str, dict],
) -> dict | None:
    """HoE against each peer on paired bootstrap resamples of the prompts, with 95% percentile
    intervals: the hypervolume as a difference and a ratio, and the mean Tchebycheff gap as a
    difference (when both answered the same preferences). A peer is compared only when every one of
    its points answered the same prompts, in the same order, as HoE's (else nothing pairs)."""
    fronts: dict[str, np.ndarray] = {}
    lambdas: dict[str, np.ndarray] = {}
    order: list[str] | None = None
    for method in per_preference:
        mine = [p for p in points if p["method"] == method]
        keys = [(p["method"], p["label"]) for p in mine]
        if not keys or any(k not in per_prompt for k in keys):
            continue
        order = order if order is not None else per_prompt[keys[0]][0]
        if all(per_prompt[k][0] == order for k in keys):
            fronts[method] = np.stack([per_prompt[k][1] for k in keys])
            lambdas[method] = np.asarray([p["preference"] for p in mine], dtype=np.float64)
    if "hoe" not in fronts or len(fronts) < 2 or order is None or len(order) < 2:
        return None
    means = bootstrap_means(fronts, BOOTSTRAP_RESAMPLES)
    volumes = resampled_hypervolumes(means, ref)
    gaps = {m: tchebycheff_gaps(lambdas[m], stack, ideal, ref).mean(-1) for m, stack in means.items()}
    peers = {}
    for peer in (m for m in fronts if m != "hoe"):
        hoe, other = methods["hoe"]["hypervolume"], methods[peer]["hypervolume"]
        low, high = np.percentile(volumes["hoe"] - volumes[peer], [2.5, 97.5])
        ratio_interval = None
        if (volumes[peer] > 0).all():
            ratio_interval = np.percentile(volumes["hoe"] / volumes[peer], [2.5, 97.5]).tolist()
        peers[peer] = {
            "difference": hoe - other,
            "difference_ci95": [float(low), float(high)],
            "ratio": hoe / other if other > 0 else None,
            "ratio_ci95": ratio_interval,
            "beyond_noise": not low <= 0.0 <= high,
        }
        if _same_preferences(lambdas["hoe"], lambdas[peer]):
            gap_low, gap_high = np.percentile(gaps["hoe"] - gaps[peer], [2.5, 97.5])
            peers[peer].update(
                gap_difference=methods["hoe"]["tchebycheff_mean_gap"] - methods[peer]["tchebycheff_mean_gap"],
                gap_difference_ci95=[float(gap_low), float(gap_high)],
            )
    return {"of": "hoe", "prompts": len(order), "resamples": BOOTSTRAP_RESAMPLES, "seed": 0, "peers": peers}


def _same_preferences(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two methods' points cover the same λ (in any order): only then are mean gaps comparable."""
    return len(a) == len(b) and sorted(map(tuple, np.round(a, 9))) == sorted(map(tuple, np.round(b, 9)))


def _tchebycheff(
    points: list[dict], methods: list[str], preferences: list[list[float]], ideal: np.ndarray, ref: np.ndarray
) -> dict:
    """Per λ, each method's gap max_i λ_i (z*_i − R_i) (rewards scaled by the run's range); the lowest wins."""
    by_key = {(p["method"], tuple(np.round(p["preference"], 9))): p for p in points if p["preference"] is not None}
    wins = {m: 0 for m in methods}
    totals: dict[str, list[float]] = {m: [] for m in methods}
    table = []
    for preference in preferences:
        lam = np.asarray(preference)
        row = {}
        for method in methods:
            point = by_key.get((method, tuple(np.round(lam, 9))))
            if point is not None:
                row[method] = tchebycheff_gap(lam, np.asarray(point["mean"]), ideal, ref)
                totals[method].append(row[method])
        if row:
            best = min(row.values())
            for method, gap in row.items():
                wins[method] += int(gap <= best + 1e-12)
        table.append({"preference": preference, "gaps": row})
    mean = {m: (sum(v) / len(v) if v else None) for m, v in totals.items()}
    return {"wins": wins, "mean": mean, "per_preference": table}


# ---- files ------------------------------------------------------------------------------------
def _write(out: Path, results: dict) -> None:
    write_json(out / "results.json", results)
    write_text(out / "results.csv", _csv(results))
    plot_fronts(results, out / "fronts.png")
    write_text(out / "report.md", markdown(results))


def _csv(results: dict) -> str:
    objectives = results["objectives"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "method",
            "label",
            *[f"lambda_{o}" for o in objectives],
            *objectives,
            *[f"se_{o}" for o in objectives],
            "prompts",
            "tokens_per_response",
            "s_per_token",
            "wall_ratio_vs_base",
            "setup_s",
        ]
    )
    for p in results["points"]:
        lam = p["preference"] if p["preference"] is not None else [""] * len(objectives)
        writer.writerow(
            [
                p["method"],
                p["label"],
                *lam,
                *[f"{v:.6g}" for v in p["mean"]],
                *[f"{v:.4g}" for v in p["se"]],
                p["prompts"],
                f"{p['tokens_per_response']:.2f}",
                f"{p['s_per_token']:.6g}",
                _fmt(p["cost_vs_base"], "{:.3f}"),
                _fmt(p["setup_s"], "{:.2f}"),
            ]
        )
    return buffer.getvalue()


def _fmt(value: float | None, pattern: str, empty: str = "") -> str:
    return empty if value is None else pattern.format(value)


def methods_table(results: dict) -> str:
    """The per-method summary as a Markdown table (also what the CLI and the demo print)."""
    lines = [
        "| method | points | hypervolume | non-dominated | controllability | Tchebycheff wins | mean gap | cost per "
        "token vs base |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in results["methods"].items():
        lines.append(
            f"| {name} | {m['points']} | {m['hypervolume']:.4g} | {m['nondominated']} | "
            f"{_fmt(m.get('controllability_mean'), '{:+.2f}', '–')} | {_fmt(m.get('tchebycheff_wins'), '{}', '–')} | "
            f"{_fmt(m.get('tchebycheff_mean_gap'), '{:.3f}', '–')} | {_fmt(m['cost_vs_base'], '{:.2f}×', '–')} |"
        )
    return "\n".join(lines)


def markdown(results: dict) -> str:
    objectives = results["objectives"]
    settings = results["settings"]
    prompts, decoding = settings.get("prompts", {}), settings.get("decoding", {})
    named = ", ".join(f"{o} ({results['scorers'][o]})" for o in objectives)
    lines = [
        "# Pareto-front evaluation",
        "",
        f"Objectives (scorer): {named}.  ",
        f"Prompts: {prompts.get('count')} from `{prompts.get('spec')}` ({prompts.get('split')} split); decoding: "
        f"{'sampled' if decoding.get('do_sample') else 'greedy'}, {decoding.get('max_new_tokens')} new tokens, batch "
        f"{decoding.get('batch_size')}, seed {decoding.get('seed')}; merge for `merged`: {settings.get('merge')}; task "
        "vectors for `rs`: "
        f"{settings.get('task_vectors')}.  ",
        f"Hypervolume reference point (shared by every method): {_vector(results['reference_point'])}; ideal point z* "
        "for the "
        f"Tchebycheff gap: {_vector(results['ideal_point'])} (the best mean reached per objective by any model of this "
        "run).",
        "",
        methods_table(results),
        "",
        "Controllability: Spearman correlation between λ_i and the reward reached on objective i, averaged over "
        "objectives. "
        "Tchebycheff wins: preferences at which a method has the lowest gap max_i λ_i (z*_i − R_i) (rewards scaled by "
        "the range "
        "between the reference and ideal points; ties count for each). Cost per token: generation wall time per "
        "generated token "
        "relative to the base model"
        + (
            f", measured side by side: every method at the preference nearest the simplex centre "
            f"decodes the same {results['timing']['batch']} prompts greedily for exactly "
            f"{results['timing']['new_tokens']} new tokens, {results['timing']['rounds']} interleaved rounds, "
            "median of the per-round ratios"
            if results.get("timing")
            else ", from the generation walls (taken at different times: a rough guide)"
        )
        + "; setup such as re-merging per λ is reported apart.",
        "",
        verdict(results),
        *comparisons_table(results.get("comparisons")),
        "",
        "![fronts](fronts.png)",
        "",
        "## Every point",
        "",
        "| method | point | " + " | ".join(objectives) + " | tokens/answer | setup s |",
        "|---|---|" + "---:|" * (len(objectives) + 2),
    ]
    for p in results["points"]:
        values = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(p["mean"], p["se"]))
        lines.append(
            f"| {p['method']} | {p['label']} | {values} | {p['tokens_per_response']:.1f} | "
            f"{_fmt(p['setup_s'], '{:.1f}', '–')} |"
        )
    return "\n".join(lines) + "\n"


def verdict(results: dict) -> str:
    """One sentence: where HoE's hypervolume stands against every peer of the run."""
    methods = results["methods"]
    if "hoe" not in methods:
        return ""
    hoe = methods["hoe"]["hypervolume"]
    peers = [m for m in methods if m != "hoe" and follows_preference(m)]
    above = [f"{m} ({methods[m]['hypervolume']:.4g})" for m in peers if methods[m]["hypervolume"] > hoe]
    below = [m for m in peers if methods[m]["hypervolume"] <= hoe]
    if not above:
        sentence = f"**HoE's hypervolume ({hoe:.4g}) is at least that of every peer here ({', '.join(peers)}).**"
    else:
        sentence = (
            f"**HoE's hypervolume ({hoe:.4g}) is below {', '.join(above)}**"
            + (f"; at least that of {', '.join(below)}" if below else "")
            + "."
        )
    return sentence + noise_sentence(results.get("comparisons"))


def noise_sentence(comparisons: dict | None) -> str:
    """Which of the verdict's differences the paired bootstrap can tell from noise."""
    if not comparisons:
        return ""
    peers = comparisons["peers"]
    beyond = [m for m, c in peers.items() if c["beyond_noise"]]
    within = [m for m, c in peers.items() if not c["beyond_noise"]]
    parts = [f" Paired bootstrap over the {comparisons['prompts']} prompts (95%):"]
    if beyond:
        parts.append(f" the difference is beyond noise against {', '.join(beyond)}")
    if within:
        parts.append(("; " if beyond else " ") + f"within noise against {', '.join(within)}")
    return "".join(parts) + "."


def comparisons_table(comparisons: dict | None) -> list[str]:
    """HoE against each peer: hypervolume ratio and difference, and the difference of mean
    Tchebycheff gaps, with their paired 95% intervals."""
    if not comparisons:
        return []
    lines = [
        f"HoE against each peer, paired bootstrap over the {comparisons['prompts']} prompts "
        f"({comparisons['resamples']} resamples, 95% percentile intervals; reference and ideal points fixed). "
        "Hypervolume: higher is better; mean Tchebycheff gap: lower is better, so a negative difference favours HoE.",
        "",
        "| peer | hypervolume, HoE ÷ peer | 95% interval | HoE − peer | 95% interval | | mean gap, HoE − peer "
        "| 95% interval | |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for peer, c in comparisons["peers"].items():
        ratio = c["ratio_ci95"]
        gap = c.get("gap_difference_ci95")
        gap_cells = "– | – | –"
        if gap is not None:
            gap_cells = (
                f"{c['gap_difference']:+.3f} | [{gap[0]:+.3f}, {gap[1]:+.3f}] | "
                f"{'within noise' if gap[0] <= 0 <= gap[1] else 'beyond noise'}"
            )
        lines.append(
            f"| {peer} | {_fmt(c['ratio'], '{:.2f}', '–')} | "
            f"{'–' if ratio is None else f'[{ratio[0]:.2f}, {ratio[1]:.2f}]'} | {c['difference']:+.3g} | "
            f"[{c['difference_ci95'][0]:+.3g}, {c['difference_ci95'][1]:+.3g}] | "
            f"{'beyond noise' if c['beyond_noise'] else 'within noise'} | {gap_cells} |"
        )
    if any(c["ratio_ci95"] is None for c in comparisons["peers"].values()):
        lines += ["", "(–: the peer's hypervolume is 0 on some resample, so only the difference has an interval.)"]
    return ["", *lines]


def _vector(values: list[float] | tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


STYLE = {
    "hoe": ("C3", "o", "-"),
    "soup": ("C0", "s", "--"),
    "merged": ("C2", "^", "--"),
    "rs": ("C1", "D", ":"),
    "mod": ("C4", "v", "-."),
    "morlhf": ("C5", "P", ":"),
    "experts": ("k", "*", ""),
    "base": ("0.4", "X", ""),
}


def plot_fronts(results: dict, path: Path) -> None:
    """2 objectives: every method's front on one axes; N ≥ 3: a matrix of pairwise projections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = results["objectives"]
    n = len(objectives)
    pairs = [(0, 1)] if n == 2 else [(i, j) for i in range(n) for j in range(n) if i < j]
    if n == 1:
        pairs = []
    cols = len(pairs) if n <= 3 else n - 1
    figure, axes = plt.subplots(
        1 if n <= 3 else n - 1,
        max(1, cols),
        figsize=(5.5 * max(1, cols), 4.5 * (1 if n <= 3 else n - 1)),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.set_visible(False)
    for index, (i, j) in enumerate(pairs):
        ax = axes.flat[index] if n <= 3 else axes[j - 1][i]
        ax.set_visible(True)
        for method in results["methods"]:
            mine = [p for p in results["points"] if p["method"] == method]
            color, marker, line = STYLE.get(method, ("C7", "o", "-"))
            if follows_preference(method):
                mine = sorted(mine, key=lambda p: p["preference"][i] - p["preference"][j])
            xs, ys = [p["mean"][i] for p in mine], [p["mean"][j] for p in mine]
            # lines join a 2-objective front in λ order; projections of a simplex lattice are points only
            ax.plot(
                xs,
                ys,
                linestyle=(line or "none") if n == 2 else "none",
                marker=marker,
                color=color,
                label=method,
                markersize=8 if line else 12,
                alpha=1.0 if n == 2 else 0.8,
            )
        ax.set_xlabel(objectives[i])
        ax.set_ylabel(objectives[j])
        ax.grid(alpha=0.3)
    handles, labels = next((a for a in axes.flat if a.get_visible()), axes.flat[0]).get_legend_handles_labels()
    columns = min(len(labels), 4 * max(1, cols))
    rows = -(-len(labels) // max(1, columns))
    figure.legend(handles, labels, loc="upper center", ncol=columns, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.07 * rows / (1 if n <= 3 else n - 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
