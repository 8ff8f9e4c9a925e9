"""The printed report (a table per target, the comparison and its targets) and the JSON files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.bench import SCENARIOS, SEED_TASKS, Options, ScenarioResult, TargetRun


@dataclass(frozen=True)
class Goal:
    """Issue 4's target for one scenario: a req/s ratio over the reference, maybe a p95."""

    scenario: str
    min_ratio: float
    max_p95_ms: float | None = None


GOALS = (
    Goal("list", 8, 200),
    Goal("get", 2, 100),
    Goal("create", 2, 100),
    Goal("update", 2, 100),
    Goal("toggle", 2, 100),
    Goal("delete", 2, 100),
    Goal("mixed", 5),
)
MAX_WORKER_MIB = 100.0


@dataclass(frozen=True)
class Check:
    what: str
    met: bool
    measured: str


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        aligned = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _errors(result: ScenarioResult) -> int:
    return result.load.socket_error_count + result.load.non_2xx


def target_report(run: TargetRun, options: Options) -> str:
    headers = ["scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "socket err", "non-2xx"]
    headers += ["RSS/worker MiB", "parent MiB", "other CPU"]
    rows = []
    for name, result in run.scenarios.items():
        latency = result.load.latency_ms
        rows.append(
            [
                name,
                f"{result.load.requests_per_second:.1f}",
                *(_ms(latency[p]) for p in ("p50", "p95", "p99", "max")),
                str(result.load.socket_error_count),
                str(result.load.non_2xx),
                f"{result.memory.max_worker_mib:.1f}",
                f"{result.memory.parent.peak_mib:.1f}",
                f"{result.foreign_cpu_share:.0%}",
            ]
        )
    title = (
        f"{run.target}: {options.workers} workers, {options.connections} connections, "
        f"{options.threads} wrk threads, {options.duration} s per scenario; "
        f"the list of {SEED_TASKS} tasks is {run.list_bytes / 1000:.1f} KB"
    )
    notes = [
        f"note: {name}: {note}" for name, result in run.scenarios.items() for note in result.notes
    ]
    if any(not result.memory.since_reset for result in run.scenarios.values()):
        notes.append("note: peak RSS could not be reset per scenario: it is since process start")
    return "\n".join([title, _table(headers, rows), *notes])


def _ratio(taskd: ScenarioResult, reference: ScenarioResult) -> float:
    reference_rate = reference.load.requests_per_second
    if not reference_rate:
        return float("inf")
    return taskd.load.requests_per_second / reference_rate


def checks(taskd: TargetRun, reference: TargetRun) -> list[Check]:
    """Every issue-4 target that this run can judge, met or not."""
    found: list[Check] = []
    for goal in GOALS:
        if goal.scenario not in taskd.scenarios or goal.scenario not in reference.scenarios:
            continue
        mine = taskd.scenarios[goal.scenario]
        ratio = _ratio(mine, reference.scenarios[goal.scenario])
        found.append(
            Check(
                f"{goal.scenario}: req/s >= {goal.min_ratio:g}x the reference's",
                ratio >= goal.min_ratio,
                f"{ratio:.2f}x",
            )
        )
        if goal.max_p95_ms is not None:
            p95 = mine.load.latency_ms["p95"]
            found.append(
                Check(
                    f"{goal.scenario}: p95 <= {goal.max_p95_ms:g} ms",
                    p95 <= goal.max_p95_ms,
                    f"{p95:.1f} ms",
                )
            )
    for name, result in taskd.scenarios.items():
        found.append(
            Check(
                f"{name}: no socket errors and no non-2xx",
                _errors(result) == 0,
                f"{result.load.socket_error_count} socket errors, {result.load.non_2xx} non-2xx",
            )
        )
    found.append(
        Check(
            f"peak RSS per worker <= {MAX_WORKER_MIB:g} MiB",
            taskd.max_worker_mib <= MAX_WORKER_MIB,
            f"{taskd.max_worker_mib:.1f} MiB",
        )
    )
    return found


def comparison_report(taskd: TargetRun, reference: TargetRun, found: list[Check]) -> str:
    headers = ["scenario", "taskd req/s", "reference req/s", "ratio", "needed", "taskd p95 ms"]
    headers += ["needed", "reference p95 ms", "taskd errors", "verdict"]
    goals = {goal.scenario: goal for goal in GOALS}
    rows = []
    for name in taskd.scenarios.keys() & reference.scenarios.keys():
        mine, theirs, goal = taskd.scenarios[name], reference.scenarios[name], goals[name]
        missed = [check for check in found if check.what.startswith(f"{name}:") and not check.met]
        rows.append(
            [
                name,
                f"{mine.load.requests_per_second:.1f}",
                f"{theirs.load.requests_per_second:.1f}",
                f"{_ratio(mine, theirs):.2f}x",
                f">={goal.min_ratio:g}x",
                _ms(mine.load.latency_ms["p95"]),
                f"<={goal.max_p95_ms:g}" if goal.max_p95_ms is not None else "-",
                _ms(theirs.load.latency_ms["p95"]),
                str(_errors(mine)),
                "MISSED" if missed else "met",
            ]
        )
    rows.sort(key=lambda row: list(goals).index(row[0]))
    memory = (
        f"peak RSS per worker: taskd {taskd.max_worker_mib:.1f} MiB "
        f"(needed <= {MAX_WORKER_MIB:g}), reference {reference.max_worker_mib:.1f} MiB"
    )
    missed = [check for check in found if not check.met]
    lines = ["taskd vs the reference, side by side", _table(headers, rows), memory]
    for name, result in reference.scenarios.items():
        if _errors(result):
            lines.append(
                f"warning: the reference had {_errors(result)} errors in {name}; "
                "its figures for that scenario are suspect"
            )
    disturbed = [
        name
        for name in taskd.scenarios.keys() & reference.scenarios.keys()
        if any(run.scenarios[name].notes for run in (taskd, reference))
    ]
    if disturbed:
        lines.append(
            f"warning: the notes above concern {', '.join(sorted(disturbed, key=SCENARIOS.index))}"
            ": those comparisons are unreliable"
        )
    if missed:
        lines.append(f"{len(missed)} of {len(found)} targets MISSED:")
        lines.extend(f"  {check.what}: {check.measured}" for check in missed)
    else:
        lines.append(f"all {len(found)} targets met")
    return "\n".join(lines)


def run_json(run: TargetRun) -> dict[str, Any]:
    return {
        "target": run.target,
        "started_at": run.started_at,
        "list_bytes": run.list_bytes,
        "max_worker_rss_mib": run.max_worker_mib,
        "scenarios": {
            name: {
                "requests_per_second": round(result.load.requests_per_second, 1),
                "non_2xx": result.load.non_2xx,
                **asdict(result.load),
                "memory": asdict(result.memory) | {"max_worker_mib": result.memory.max_worker_mib},
                "foreign_cpu_share": round(result.foreign_cpu_share, 3),
                "notes": list(result.notes),
            }
            for name, result in run.scenarios.items()
        },
    }


def options_json(options: Options) -> dict[str, Any]:
    # The admin URL may carry a password: leave it out.
    return {key: value for key, value in asdict(options).items() if key != "admin_url"}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
