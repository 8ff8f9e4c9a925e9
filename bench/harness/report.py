"""The printed report (a table per target, the comparison and its targets) and the JSON files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import LIST_MISS, MANY_USERS, ONE_USER
from harness.bench import Options, ScenarioResult, SetRun, TargetRun


@dataclass(frozen=True)
class Goal:
    """A target for one scenario: a req/s ratio over the reference, maybe a p95 (issue 4 for one
    user, issue 14 for the list on a miss and for many users)."""

    scenario: str
    min_ratio: float | None
    max_p95_ms: float | None = None


@dataclass(frozen=True)
class Comparison:
    """What a data set of taskd's is compared with: the reference on `reference_set`."""

    reference_set: str
    goals: tuple[Goal, ...]


COMPARISONS = {
    ONE_USER: Comparison(
        ONE_USER,
        (
            Goal("list", 8, 200),
            Goal("get", 2, 100),
            Goal("create", 2, 100),
            Goal("update", 2, 100),
            Goal("toggle", 2, 100),
            Goal("delete", 2, 100),
            Goal("mixed", 5),
        ),
    ),
    # The reference keeps no list pages: its one-user list is the same request, always a miss.
    LIST_MISS: Comparison(ONE_USER, (Goal("list", 8, 200),)),
    MANY_USERS: Comparison(
        MANY_USERS,
        (
            Goal("list", 5, 100),
            Goal("get", None),
            Goal("create", None),
            Goal("update", None),
            Goal("toggle", None),
            Goal("delete", None),
            Goal("mixed", 3.5, 80),
        ),
    ),
}
MAX_WORKER_MIB = 100.0
OUTCOMES = ("hit", "patch", "miss")
# The slower CPU probe of a comparison more than this many times the faster: the cores did not
# run at the same speed for both targets, and the comparison says so.
SPEED_SPREAD = 1.25


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


def _list_cache(result: ScenarioResult) -> str:
    """The shares of the scenario's lists that taskd's page cache served as kept, patched, or
    read in full; "-" without lists (or for the reference, which keeps none)."""
    total = sum(result.list_cache.values())
    if not total:
        return "-"
    return "/".join(f"{result.list_cache.get(outcome, 0) / total:.0%}" for outcome in OUTCOMES)


def _errors(result: ScenarioResult) -> int:
    return result.load.socket_error_count + result.load.non_2xx


def target_report(run: SetRun, options: Options) -> str:
    headers = ["scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "socket err", "non-2xx"]
    headers += ["RSS/worker MiB", "parent MiB", "other CPU", "CPU probe ms", "list hit/patch/miss"]
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
                f"{result.speed_probe_ms:.0f}",
                _list_cache(result),
            ]
        )
    title = (
        f"{run.target}, {run.data_set}: {options.workers} workers, {options.connections} "
        f"connections, {options.threads} wrk threads, {options.duration} s per scenario; "
        f"{run.shape}"
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


def _pairs(
    taskd: TargetRun, reference: TargetRun
) -> Iterator[tuple[str, Goal, ScenarioResult, ScenarioResult]]:
    """(data set, goal, taskd's result, the reference's) for every scenario both ran."""
    for data_set, comparison in COMPARISONS.items():
        mine = taskd.sets.get(data_set)
        theirs = reference.sets.get(comparison.reference_set)
        if mine is None or theirs is None:
            continue
        for goal in comparison.goals:
            if goal.scenario in mine.scenarios and goal.scenario in theirs.scenarios:
                yield data_set, goal, mine.scenarios[goal.scenario], theirs.scenarios[goal.scenario]


def _goal_checks(
    data_set: str, goal: Goal, mine: ScenarioResult, theirs: ScenarioResult
) -> list[Check]:
    """The checks of one scenario's goal: its ratio over the reference, its p95."""
    where = f"{data_set} {goal.scenario}"
    found = []
    if goal.min_ratio is not None:
        ratio = _ratio(mine, theirs)
        found.append(
            Check(
                f"{where}: req/s >= {goal.min_ratio:g}x the reference's",
                ratio >= goal.min_ratio,
                f"{ratio:.2f}x",
            )
        )
    if goal.max_p95_ms is not None:
        p95 = mine.load.latency_ms["p95"]
        found.append(
            Check(
                f"{where}: p95 <= {goal.max_p95_ms:g} ms", p95 <= goal.max_p95_ms, f"{p95:.1f} ms"
            )
        )
    return found


def checks(taskd: TargetRun, reference: TargetRun) -> list[Check]:
    """Every target that this run can judge, met or not."""
    found: list[Check] = []
    for data_set, goal, mine, theirs in _pairs(taskd, reference):
        found += _goal_checks(data_set, goal, mine, theirs)
    for data_set, run in taskd.sets.items():
        for name, result in run.scenarios.items():
            load = result.load
            found.append(
                Check(
                    f"{data_set} {name}: no socket errors and no non-2xx",
                    _errors(result) == 0,
                    f"{load.socket_error_count} socket errors, {load.non_2xx} non-2xx",
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


def _other_cpu(mine: ScenarioResult, theirs: ScenarioResult) -> str:
    return f"{mine.foreign_cpu_share:.0%}/{theirs.foreign_cpu_share:.0%}"


def _probes(mine: ScenarioResult, theirs: ScenarioResult) -> str:
    return f"{mine.speed_probe_ms:.0f}/{theirs.speed_probe_ms:.0f}"


def _unequal_speeds(mine: ScenarioResult, theirs: ScenarioResult) -> bool:
    """Whether the cores ran at speeds further apart than SPEED_SPREAD for the two targets."""
    slower, faster = sorted((mine.speed_probe_ms, theirs.speed_probe_ms), reverse=True)
    return slower > SPEED_SPREAD * faster


def comparison_report(taskd: TargetRun, reference: TargetRun, found: list[Check]) -> str:
    headers = ["set", "scenario", "taskd req/s", "reference req/s", "ratio", "needed"]
    headers += ["taskd p95 ms", "needed", "reference p95 ms", "taskd errors", "other CPU"]
    headers += ["CPU probe ms"]
    headers += ["verdict"]
    rows = []
    for data_set, goal, mine, theirs in _pairs(taskd, reference):
        where = f"{data_set} {goal.scenario}:"
        missed = [check for check in found if check.what.startswith(where) and not check.met]
        rows.append(
            [
                data_set,
                goal.scenario,
                f"{mine.load.requests_per_second:.1f}",
                f"{theirs.load.requests_per_second:.1f}",
                f"{_ratio(mine, theirs):.2f}x",
                f">={goal.min_ratio:g}x" if goal.min_ratio is not None else "-",
                _ms(mine.load.latency_ms["p95"]),
                f"<={goal.max_p95_ms:g}" if goal.max_p95_ms is not None else "-",
                _ms(theirs.load.latency_ms["p95"]),
                str(_errors(mine)),
                _other_cpu(mine, theirs),
                _probes(mine, theirs),
                "MISSED" if missed else "met",
            ]
        )
    memory = (
        f"peak RSS per worker: taskd {taskd.max_worker_mib:.1f} MiB "
        f"(needed <= {MAX_WORKER_MIB:g}), reference {reference.max_worker_mib:.1f} MiB"
    )
    lines = [
        "taskd vs the reference, side by side (other CPU and CPU probe: taskd's run/the "
        "reference's)",
        _table(headers, rows),
        memory,
    ]
    for data_set, run in reference.sets.items():
        for name, result in run.scenarios.items():
            if _errors(result):
                lines.append(
                    f"warning: the reference had {_errors(result)} errors in {data_set} {name}; "
                    "its figures for that scenario are suspect"
                )
    disturbed = [
        f"{data_set} {goal.scenario}"
        for data_set, goal, mine, theirs in _pairs(taskd, reference)
        if mine.notes or theirs.notes
    ]
    if disturbed:
        lines.append(
            f"warning: the notes above concern {', '.join(disturbed)}"
            ": those comparisons are unreliable"
        )
    uneven = [
        f"{data_set} {goal.scenario}"
        for data_set, goal, mine, theirs in _pairs(taskd, reference)
        if _unequal_speeds(mine, theirs)
    ]
    if uneven:
        lines.append(
            f"warning: the cores ran at speeds more than {SPEED_SPREAD - 1:.0%} apart for taskd "
            f"and the reference (CPU probe) in {', '.join(uneven)}: those ratios are unreliable"
        )
    missed = [check for check in found if not check.met]
    if missed:
        lines.append(f"{len(missed)} of {len(found)} targets MISSED:")
        lines.extend(f"  {check.what}: {check.measured}" for check in missed)
    else:
        lines.append(f"all {len(found)} targets met")
    return "\n".join(lines)


def floor_report(taskd: TargetRun, floor: TargetRun, reference: TargetRun) -> str:
    """The floor (bench/floor) held to taskd's targets, and taskd's rate as a share of it: a
    target the floor misses is out of reach of taskd's data layer on this stack and these cores,
    whatever taskd's handlers leave out."""
    headers = ["set", "scenario", "floor req/s", "ratio", "needed", "floor p95 ms", "needed"]
    headers += ["floor verdict", "taskd/floor", "CPU probe ms"]
    rows = []
    missed = 0
    for data_set, goal, lowest, theirs in _pairs(floor, reference):
        mine = taskd.sets[data_set].scenarios.get(goal.scenario) if data_set in taskd.sets else None
        met = all(check.met for check in _goal_checks(data_set, goal, lowest, theirs))
        missed += not met
        share = (
            f"{mine.load.requests_per_second / lowest.load.requests_per_second:.0%}"
            if mine is not None and lowest.load.requests_per_second
            else "-"
        )
        rows.append(
            [
                data_set,
                goal.scenario,
                f"{lowest.load.requests_per_second:.1f}",
                f"{_ratio(lowest, theirs):.2f}x",
                f">={goal.min_ratio:g}x" if goal.min_ratio is not None else "-",
                _ms(lowest.load.latency_ms["p95"]),
                f"<={goal.max_p95_ms:g}" if goal.max_p95_ms is not None else "-",
                "MISSED" if not met else "met",
                share,
                f"{lowest.speed_probe_ms:.0f}",
            ]
        )
    errors = sum(
        _errors(result) for run in floor.sets.values() for result in run.scenarios.values()
    )
    return "\n".join(
        [
            "the floor (taskd's data layer behind bare handlers) held to taskd's targets",
            _table(headers, rows),
            f"the floor missed {missed} of {len(rows)} rows; it had {errors} errors",
        ]
    )


def set_json(run: SetRun) -> dict[str, Any]:
    return {
        "target": run.target,
        "data_set": run.data_set,
        "started_at": run.started_at,
        "shape": run.shape,
        "list_bytes": run.list_bytes,
        "max_worker_rss_mib": run.max_worker_mib,
        "scenarios": {
            name: {
                "requests_per_second": round(result.load.requests_per_second, 1),
                "non_2xx": result.load.non_2xx,
                **asdict(result.load),
                "memory": asdict(result.memory) | {"max_worker_mib": result.memory.max_worker_mib},
                "foreign_cpu_share": round(result.foreign_cpu_share, 3),
                "speed_probe_ms": round(result.speed_probe_ms, 1),
                "list_cache_lookups": result.list_cache,
                "notes": list(result.notes),
            }
            for name, result in run.scenarios.items()
        },
    }


def run_json(run: TargetRun) -> dict[str, Any]:
    return {
        "target": run.target,
        "python": run.interpreter,
        "max_worker_rss_mib": run.max_worker_mib,
        "sets": {data_set: set_json(one) for data_set, one in run.sets.items()},
    }


def options_json(options: Options) -> dict[str, Any]:
    # The admin URL may carry a password: leave it out.
    return {key: value for key, value in asdict(options).items() if key != "admin_url"}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
