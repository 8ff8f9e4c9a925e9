"""Benchmark taskd (and the seed plan's FastAPI reference) with wrk on this machine.

    python3 bench/run.py                     # taskd alone: a table, and JSON in bench/results/
    python3 bench/run.py --compare           # taskd and the reference; ratios and targets

Each target gets a fresh database and its own server on a free loopback port for each data set;
with --compare each scenario runs on taskd, then at once on the reference. All of it is gone when
the run ends, however it ends. See bench/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from harness import SETS, BenchError
from harness.bench import SCENARIOS, Options, TargetRun, bench_targets
from harness.commands import ensure_wrk
from harness.machine import describe
from harness.report import (
    checks,
    comparison_report,
    floor_report,
    options_json,
    run_json,
    target_report,
    write_json,
)
from harness.targets import BENCH_DIR, DEFAULT_TASKD, Floor, Reference, Target, Taskd

EXIT_MISSED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _subset(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A parser of a comma-separated subset of `choices`, returned in their order."""

    def parse(value: str) -> tuple[str, ...]:
        chosen = {name.strip() for name in value.split(",") if name.strip()}
        unknown = chosen - set(choices)
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return tuple(name for name in choices if name in chosen)

    return parse


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="Benchmark taskd against the seed plan's reference."
    )
    parser.add_argument("--target", choices=("taskd", "reference", "floor"), default="taskd")
    parser.add_argument(
        "--compare", action="store_true", help="run taskd and the reference, and compare"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="with --compare: also the floor (bench/floor), taking turns with the two",
    )
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even if a target is missed")
    parser.add_argument("--duration", type=_positive, default=15, help="seconds per scenario")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of mixed load first")
    parser.add_argument("--connections", type=_positive, default=100)
    parser.add_argument("--threads", type=_positive, default=2, help="wrk threads")
    parser.add_argument("--workers", type=_positive, default=2, help="server worker processes")
    parser.add_argument(
        "--scenarios",
        type=_subset(SCENARIOS),
        default=SCENARIOS,
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--sets",
        type=_subset(SETS),
        default=SETS,
        help=f"comma-separated subset of the data sets {','.join(SETS)}",
    )
    parser.add_argument("--taskd", type=Path, default=DEFAULT_TASKD, help="the taskd executable")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_ADMIN_URL,
        help="a URL of the PostgreSQL server that may create and drop databases",
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.floor and not args.compare:
        parser.error("--floor goes with --compare (alone: --target floor)")
    return args


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into an exception so that every server and database is cleaned up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _options(args: argparse.Namespace) -> Options:
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        workers=args.workers,
        scenarios=args.scenarios,
        sets=args.sets,
        admin_url=args.postgres,
    )


class Session:
    """One invocation: its options, its timestamp, and where its JSON goes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.options = _options(args)
        self.results_dir: Path = args.results
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.context = {
            "machine": describe(self.options.admin_url),
            "options": options_json(self.options),
        }

    def bench(self, targets: list[Target], wrk: str) -> list[TargetRun]:
        runs = bench_targets(targets, self.options, wrk)
        for run in runs:
            for one in run.sets.values():
                print(target_report(one, self.options) + "\n", flush=True)
            print(f"{run.target} ran on Python {run.interpreter}\n", flush=True)
            self.save(run.target, run_json(run))
        return runs

    def compare(self, mine: TargetRun, theirs: TargetRun) -> bool:
        """Print the comparison and save it; whether every target was met."""
        found = checks(mine, theirs)
        print(comparison_report(mine, theirs, found), flush=True)
        self.save(
            "compare",
            {
                "taskd": run_json(mine),
                "reference": run_json(theirs),
                "checks": [asdict(check) for check in found],
            },
        )
        return all(check.met for check in found)

    def save(self, name: str, payload: dict[str, Any]) -> None:
        write_json(self.results_dir / f"{name}-{self.stamp}.json", self.context | payload)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_sigterm()
    taskd = Taskd(args.taskd)
    try:
        wrk = ensure_wrk()
        session = Session(args)
        if not args.compare:
            alone: dict[str, Target] = {
                "taskd": taskd,
                "reference": Reference(),
                "floor": Floor(args.taskd),
            }
            session.bench([alone[args.target]], wrk)
            return 0
        # The floor takes its turn in each scenario between taskd and the reference.
        runs = session.bench(
            [taskd, *([Floor(args.taskd)] if args.floor else []), Reference()], wrk
        )
        mine, theirs = runs[0], runs[-1]
        all_met = session.compare(mine, theirs)
        if args.floor:
            print(floor_report(mine, runs[1], theirs), flush=True)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped and databases dropped", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if all_met or args.no_fail else EXIT_MISSED


if __name__ == "__main__":
    sys.exit(main())
