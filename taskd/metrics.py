"""Prometheus metrics, added up across the worker processes.

`taskd serve` runs prometheus_client in its multiprocess mode: every worker writes its samples to
files in PROMETHEUS_MULTIPROC_DIR (a directory of this run) and `/metrics`, whichever worker
answers it, adds them all up. Without that variable (the in-process tests) one process counts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a cached lookup to the database deadline (TASKD_DB_TIMEOUT, 5 s by default) and past it.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def use_multiprocess_dir() -> str:
    """Give this run its own metrics directory; call it before prometheus_client is imported."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its directory was chosen")
    configured = os.environ.get(MULTIPROC_DIR)
    if not configured:
        created = tempfile.mkdtemp(prefix="taskd-metrics-")
        os.environ[MULTIPROC_DIR] = created
        # Only the process that created it runs this: workers leave through os._exit.
        atexit.register(shutil.rmtree, created, ignore_errors=True)
        return created
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    # Samples an earlier run left behind would be added to this run's.
    for stale in directory.glob("*.db"):
        stale.unlink()
    return configured


def forget_process(pid: int) -> None:
    """Drop the gauges of a worker that exited; its counters and histograms still count."""
    if MULTIPROC_DIR in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics:
    """The service's metrics; one set per process, registered in a registry of its own."""

    def __init__(self) -> None:
        # Imported here, not at the top: prometheus_client picks its multiprocess mode when it is
        # first imported, so `taskd serve` calls use_multiprocess_dir() before anything imports it.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self._registry = CollectorRegistry()
        registry = self._registry
        self.requests: Counter = Counter(
            "taskd_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency: Histogram = Histogram(
            "taskd_http_request_duration_seconds",
            "Time from a request's headers to the end of its response",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

        def gauge(name: str, documentation: str) -> Gauge:
            # livesum: the sum over the workers that are running.
            return Gauge(name, documentation, registry=registry, multiprocess_mode="livesum")

        self.in_flight = gauge(
            "taskd_http_requests_in_flight", "Requests received and not yet fully answered"
        )
        self.pool_connections = gauge("taskd_db_pool_connections", "Open database connections")
        self.pool_in_use = gauge(
            "taskd_db_pool_connections_in_use", "Database connections lent to a request"
        )
        self.pool_waiting = gauge(
            "taskd_db_pool_requests_waiting", "Requests waiting for a database connection"
        )
        self.pool_max = gauge(
            "taskd_db_pool_max_connections", "Database connections the pools may open"
        )
        self.event_streams = gauge(
            "taskd_event_streams_open", "Live-update streams (tasks/events) open"
        )
        self.listeners_connected = gauge(
            "taskd_event_listeners_connected",
            "Workers whose change listener has its LISTEN session (one per worker when healthy)",
        )
        self.list_cache: Counter = Counter(
            "taskd_list_cache_lookups",
            "List pages looked up in the workers' page caches, by outcome: hit (unchanged, "
            "served as kept), patch (brought up to date from the tasks changed since), miss "
            "(not kept, or read again in full)",
            ["outcome"],
            registry=registry,
        )
        self.list_cache_bytes = gauge(
            "taskd_list_cache_bytes", "Bytes of list pages the workers' page caches hold"
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # Each (method, route, status)'s labelled series, looked up once (labels() costs more
        # than the increments); a bounded set, as the recorder names only known methods.
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._request_series[key] = series
        count, duration = series
        count.inc()
        duration.observe(seconds)

    def observe_server(self, in_flight: int, pool_stats: Mapping[str, int]) -> None:
        self.in_flight.set(in_flight)
        self.observe_pool(pool_stats)

    def observe_listener(self, connected: bool) -> None:
        self.listeners_connected.set(1 if connected else 0)

    def observe_pool(self, stats: Mapping[str, int]) -> None:
        """Record psycopg_pool's `get_stats()`."""
        self.pool_connections.set(stats["pool_size"])
        self.pool_in_use.set(stats["pool_size"] - stats["pool_available"])
        self.pool_waiting.set(stats["requests_waiting"])
        self.pool_max.set(stats["pool_max"])

    def observe_list_cache(self, outcome: str, cached_bytes: int) -> None:
        """Record one page-cache lookup's outcome and what the cache holds after it."""
        self.list_cache.labels(outcome).inc()
        self.list_cache_bytes.set(cached_bytes)

    def render(self) -> bytes:
        """The Prometheus text exposition: of every worker in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if MULTIPROC_DIR not in os.environ:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
