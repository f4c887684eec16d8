"""Summarise a mutmut run over hoe's core (``make mutation``) into committed results.

Reads mutmut's own verdicts (``mutmut results --all true``) and the diffs of the mutants that
were not killed (``mutmut show``), sorts each survivor into "explained as equivalent" (listed with
its reason in ``equivalent.json`` beside this file) or "unexplained", and writes:

- ``results.json``: per module and in total, mutants by verdict and the kill rate over the
  non-equivalent mutants (killed, timed out and crashed count as killed; "no tests" counts as
  surviving: a mutant no selected test reaches is not caught);
- ``survivors.md``: every mutant that was not killed, with its diff and, where it has one, the
  reason it changes nothing observable.

Run from the repository root after ``mutmut run``; it changes nothing under ``src/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).parent
MUTMUT = str(Path(sys.executable).parent / "mutmut")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def verdicts() -> dict[str, str]:
    """mutant name -> mutmut's verdict, for every mutant of the last run."""
    out = subprocess.run([MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in out.splitlines() if "__mutmut_" in line)
    return {name: verdict for name, verdict in pairs}


def module_of(mutant: str) -> str:
    """'hoe.rl.ppo.x_gae__mutmut_3' -> 'hoe.rl.ppo' (mutmut prefixes function names with 'x')."""
    return mutant[: mutant.index(".x")]


def diff_of(mutant: str) -> str:
    shown = subprocess.run([MUTMUT, "show", mutant], capture_output=True, text=True).stdout
    return "\n".join(
        line for line in shown.splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    )


def summarise(results: dict[str, str], equivalent: dict[str, str]) -> dict:
    modules: dict[str, Counter] = defaultdict(Counter)
    for mutant, verdict in results.items():
        bucket = "killed" if verdict in KILLED else "equivalent" if mutant in equivalent else verdict
        modules[module_of(mutant)][bucket] += 1
    table = {}
    for module, counts in sorted(modules.items()):
        judged = sum(counts.values()) - counts["equivalent"] - counts["skipped"] - counts["not checked"]
        table[module] = {
            **dict(counts),
            "total": sum(counts.values()),
            "kill_rate": round(counts["killed"] / judged, 4) if judged else None,
        }
    total = sum((Counter(v) for v in modules.values()), Counter())
    judged = sum(total.values()) - total["equivalent"] - total["skipped"] - total["not checked"]
    return {
        "modules": table,
        "total": {
            **dict(total),
            "total": sum(total.values()),
            "kill_rate": round(total["killed"] / judged, 4) if judged else None,
        },
    }


def diffs_of(mutants: list[str]) -> dict[str, str]:
    """Every listed mutant's diff, four ``mutmut show`` processes at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(mutants, pool.map(diff_of, mutants)))


def survivors_markdown(results: dict[str, str], equivalent: dict[str, str], summary: dict) -> str:
    lines = [
        "# Mutants not killed",
        "",
        "Written by `benchmarks/mutation/report.py` after `make mutation`; see README.md beside it for how to read it.",
        "",
        "| module | mutants | killed | equivalent (explained) | survived | no tests | kill rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module, c in {**summary["modules"], "total": summary["total"]}.items():
        rate = "–" if c["kill_rate"] is None else f"{100 * c['kill_rate']:.1f}%"
        lines.append(
            f"| {module} | {c['total']} | {c.get('killed', 0)} | {c.get('equivalent', 0)} | {c.get('survived', 0)} | "
            f"{c.get('no tests', 0)} | {rate} |"
        )
    shown = [m for m, v in results.items() if v not in KILLED and v not in ("skipped", "not checked")]
    diffs = diffs_of(shown)
    for title, chosen in (
        ("Unexplained survivors", lambda m: m not in equivalent),
        ("Equivalent mutants (explained)", lambda m: m in equivalent),
    ):
        lines += ["", f"## {title}", ""]
        for mutant, verdict in results.items():
            if verdict in KILLED or not chosen(mutant) or verdict in ("skipped", "not checked"):
                continue
            reason = f" — {equivalent[mutant]}" if mutant in equivalent else ""
            lines += [f"### `{mutant}` ({verdict}){reason}", "", "```diff", diffs[mutant], "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    results = verdicts()
    equivalent = json.loads((HERE / "equivalent.json").read_text())
    stale = sorted(set(equivalent) - set(results))
    if stale:
        print(f"equivalent.json names mutants this run does not have (the code moved): {', '.join(stale[:5])}")
    summary = summarise(results, equivalent)
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (HERE / "survivors.md").write_text(survivors_markdown(results, equivalent, summary))
    t = summary["total"]
    print(
        f"{t['total']} mutants: {t.get('killed', 0)} killed, {t.get('equivalent', 0)} equivalent (explained), "
        f"{t.get('survived', 0)} survived, {t.get('no tests', 0)} with no test; kill rate "
        f"{100 * (t['kill_rate'] or 0):.1f}% "
        "of the non-equivalent ones"
    )


if __name__ == "__main__":
    main()
