"""Where HoE's hypervolume falls short of a peer's: its ends, or the inside of its front.

    .venv/bin/python benchmarks/results/front_gaps.py --run benchmarks/results/2-objectives-r64-134-prompts --peer rs

Reads a finished evaluation's ``results.json`` (mean reward per point, the run's reference point;
no model loads) and recomputes HoE's hypervolume three ways, on the mean points as the report does:
as measured; with the peer's points at the simplex's vertices in place of HoE's (what HoE would gain
if its experts at the ends were the peer's, e.g. full fine-tunes instead of LoRA experts); and with
the peer's points added that lie in the widest gap of HoE's front along the first objective (what
HoE would gain if its front covered that stretch). Writes ``front-gaps-PEER.json`` into the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hoe.evaluation.metrics import hypervolume, nondominated
from hoe.utils.io import write_json


def means(results: dict, method: str) -> dict[str, np.ndarray]:
    return {p["label"]: np.asarray(p["mean"]) for p in results["points"] if p["method"] == method}


def is_vertex(label: str) -> bool:
    return sorted(float(x) for x in label.split("-"))[-1] == 1.0


def widest_gap(points: np.ndarray) -> tuple[float, float]:
    """The widest stretch of the first objective between two neighbours on the non-dominated front."""
    front = np.sort(points[nondominated(points)][:, 0])
    widths = np.diff(front)
    i = int(np.argmax(widths))
    return float(front[i]), float(front[i + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="an evaluation folder with results.json")
    parser.add_argument("--peer", default="rs")
    args = parser.parse_args()
    if not (args.run / "results.json").is_file():
        parser.error(f"--run: '{args.run}' holds no results.json (a finished hoe evaluate run)")
    results = json.loads((args.run / "results.json").read_text())
    reference = np.asarray(results["reference_point"])
    hoe, peer = means(results, "hoe"), means(results, args.peer)
    if not hoe or not peer:
        parser.error(f"--run: '{args.run}' has no points of {'hoe' if not hoe else args.peer}")
    measured = np.stack(list(hoe.values()))
    ends_swapped = np.stack(
        [v for k, v in hoe.items() if not is_vertex(k)] + [v for k, v in peer.items() if is_vertex(k)]
    )
    low, high = widest_gap(measured)
    inside = [k for k, v in peer.items() if low < v[0] < high]
    gap_filled = np.concatenate([measured, np.stack([peer[k] for k in inside])]) if inside else measured
    report = {
        "run": str(args.run),
        "peer": args.peer,
        "reference_point": reference.tolist(),
        "hypervolume": {
            "hoe": hypervolume(measured, reference),
            args.peer: hypervolume(np.stack(list(peer.values())), reference),
            "hoe_with_peer_vertices": hypervolume(ends_swapped, reference),
            "hoe_with_peer_points_in_its_widest_gap": hypervolume(gap_filled, reference),
        },
        "widest_gap": {"objective": results["objectives"][0], "from": low, "to": high, "peer_points": inside},
    }
    write_json(args.run / f"front-gaps-{args.peer}.json", report)
    for name, value in report["hypervolume"].items():
        print(f"{name:<40} {value:.5f}")
    print(
        f"HoE's widest gap in {results['objectives'][0]}: {low:.3f} to {high:.3f}; {args.peer}'s points there: {inside}"
    )


if __name__ == "__main__":
    main()
