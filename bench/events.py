#!/usr/bin/env python3
"""Live updates benchmark (`make bench-events`; see bench/README.md, "Live updates").

1. Latency: one event stream open, then `--writes` creates one after the other on another
   connection; for each, the time from its complete 201 to its event's arrival: median, p99, max.
2. Idle streams: the mixed scenario for `--duration` s without streams, then `--rounds` times
   with `--streams` idle streams open (other users' streams, heartbeats only) and without again;
   the rates, the server's CPU time per request, and the workers' RSS before and with the
   streams open.

Goals (issue 13): p99 <= 250 ms; mixed with the streams open >= 90% of without.
Exit status 0 when both goals are met, 1 when one is missed, 2 when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import HOST, BenchError, processes
from harness.bench import WRITER_ID, Stage, free_port, seed_one_user
from harness.commands import program, progress
from harness.events import IdleStreams, write_latencies
from harness.postgres import fresh_database
from harness.server import Server, running
from harness.targets import BENCH_DIR, DEFAULT_TASKD, TOKEN_TTL_S, Taskd
from harness.tokens import hs256_token
from harness.wrk import Load

LATENCY_GOAL_MS = 250.0
THROUGHPUT_GOAL = 0.90
# The idle streams' users: none of them is written to by the load.
FIRST_IDLE_USER = 1_000_000
SETTLE_S = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes timed for latency")
    parser.add_argument("--streams", type=int, default=1000, help="idle streams held open")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each mixed run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="mixed runs with the streams open (each between two without)",
    )
    parser.add_argument("--connections", type=int, default=100, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--taskd", type=Path, default=DEFAULT_TASKD)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    return parser.parse_args(argv)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def worker_rss_mib(server: Server) -> list[float]:
    """The current RSS of each worker (the server's children)."""
    rss = []
    for info in processes.tree(server.pid)[1:]:
        status = (processes.PROC / str(info.pid) / "status").read_text()
        lines = status.splitlines()
        kib = next(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
        rss.append(round(kib / 1024, 1))
    return rss


def open_streams_metric(port: int) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("taskd_event_streams_open "):
                return float(line.split()[1])
    raise BenchError("/metrics has no taskd_event_streams_open")


def server_cpu_seconds(server: Server) -> float:
    return sum(info.cpu_seconds for info in processes.tree(server.pid))


def mixed(load: Load, server: Server, seconds: int, label: str) -> dict[str, float]:
    """Requests per second, and the server's CPU time per request (which other work on the
    machine disturbs much less than the rate)."""
    server.wait_idle()
    progress(f"mixed for {seconds} s, {label}")
    cpu_before = server_cpu_seconds(server)
    result = load.run("mixed", seconds)
    cpu_us = (server_cpu_seconds(server) - cpu_before) / max(result.requests, 1) * 1e6
    return {"rps": result.requests_per_second, "server_cpu_us_per_request": cpu_us}


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Taskd(args.taskd)
    target.prepare()
    wrk = program("wrk")
    with (
        tempfile.TemporaryDirectory(prefix="bench-events-") as tmp,
        fresh_database(args.postgres) as database_url,
    ):
        workdir = Path(tmp)
        secret = secrets.token_urlsafe(48)
        port = free_port()
        launch = target.launch(database_url, secret, port, args.workers)
        # Every idle stream in one worker, at worst (SO_REUSEPORT spreads them only roughly).
        launch = replace(
            launch, env=launch.env | {"TASKD_EVENT_STREAMS_MAX": str(args.streams + 10)}
        )
        writer_token = hs256_token(secret, WRITER_ID, TOKEN_TTL_S)
        progress(f"taskd: starting on port {port} with {args.workers} workers")
        with running(launch, workdir / "server.log") as server:
            stage = Stage(target, server, launch, database_url, secret, port, workdir)
            seeded = seed_one_user(stage)
            load = Load(
                wrk=wrk,
                url=f"http://{HOST}:{port}",
                connections=args.connections,
                threads=args.threads,
                env=seeded.workload.env,
            )
            load.run("mixed", 3)  # warm-up, not measured

            server.wait_idle()
            progress(f"latency: {args.writes} writes, each awaited, one stream reading")
            latencies = asyncio.run(write_latencies(port, WRITER_ID, writer_token, args.writes))
            latency_ms = {
                "median": statistics.median(latencies) * 1000,
                "p99": percentile(latencies, 0.99) * 1000,
                "max": max(latencies) * 1000,
                "min": min(latencies) * 1000,
            }

            users = [
                (user, hs256_token(secret, user, TOKEN_TTL_S))
                for user in range(FIRST_IDLE_USER, FIRST_IDLE_USER + args.streams)
            ]
            # Without, with, without, ...: load that others put on the machine meanwhile, and
            # the writer's growing task count, weigh on both sides alike.
            without = [mixed(load, server, args.duration, "no streams open")]
            with_streams = []
            rss: dict[str, list[float]] = {"before": worker_rss_mib(server)}
            for _ in range(args.rounds):
                idle = IdleStreams()
                try:
                    progress(f"opening {args.streams} idle streams")
                    idle.open(port, users)
                    time.sleep(SETTLE_S)
                    counted = open_streams_metric(port)
                    if counted != args.streams:
                        raise BenchError(f"/metrics counts {counted} streams, not {args.streams}")
                    rss["with_streams"] = worker_rss_mib(server)
                    label = f"{args.streams} streams open"
                    with_streams.append(mixed(load, server, args.duration, label))
                finally:
                    idle.close()
                without.append(mixed(load, server, args.duration, "no streams open"))
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": vars(args) | {"taskd": str(args.taskd), "results": str(args.results)},
        "writes": args.writes,
        "latency_ms": latency_ms,
        "streams": args.streams,
        "worker_rss_mib": rss,
        "mixed": {"without": without, "with_streams": with_streams},
        "mixed_ratio": _mean(with_streams, "rps") / _mean(without, "rps"),
    }


def _mean(runs: list[dict[str, float]], key: str) -> float:
    return statistics.mean(run[key] for run in runs)


def report(result: dict[str, Any]) -> bool:
    latency = result["latency_ms"]
    rss = result["worker_rss_mib"]
    runs = result["mixed"]
    grown = sum(rss["with_streams"]) - sum(rss["before"])
    per_stream_kib = grown * 1024 / result["streams"]
    latency_met = latency["p99"] <= LATENCY_GOAL_MS
    ratio_met = result["mixed_ratio"] >= THROUGHPUT_GOAL
    print(
        f"write 2xx -> event, {result['writes']} writes: median {latency['median']:.1f} ms, "
        f"p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms, min {latency['min']:.1f} ms "
        f"(goal p99 <= {LATENCY_GOAL_MS:.0f} ms: {'met' if latency_met else 'MISSED'})"
    )
    print(
        f"{result['streams']} idle streams: worker RSS {rss['before']} -> {rss['with_streams']} "
        f"MiB ({grown:+.1f} MiB, {per_stream_kib:.1f} KiB per stream)"
    )
    for name, key, unit in (
        ("req/s", "rps", ""),
        ("server CPU", "server_cpu_us_per_request", " us"),
    ):
        without = ", ".join(f"{run[key]:.0f}{unit}" for run in runs["without"])
        with_streams = ", ".join(f"{run[key]:.0f}{unit}" for run in runs["with_streams"])
        print(f"mixed {name}: without streams {without}; with them open {with_streams}")
    print(
        f"mixed with the streams open: {result['mixed_ratio']:.1%} of the rate without "
        f"(goal >= {THROUGHPUT_GOAL:.0%}: {'met' if ratio_met else 'MISSED'})"
    )
    return latency_met and ratio_met


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BenchError as error:
        print(f"bench-events: {error}", file=sys.stderr)
        return 2
    met = report(result)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results / f"events-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
