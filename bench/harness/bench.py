"""One target's run: fresh database, server, seed, warm-up, the scenarios, then teardown."""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from math import ceil
from pathlib import Path

from harness import HOST, BenchError, cpu
from harness.api import ApiClient
from harness.commands import progress
from harness.postgres import busy_sessions, fresh_database
from harness.server import MemoryPeaks, Server, running
from harness.targets import Target
from harness.wrk import Load, WrkResult

SCENARIOS = ("list", "get", "create", "update", "toggle", "delete", "mixed")
SEED_TASKS = 1000
# The reader owns the seeded tasks; the writer gets every task the load creates, so the
# reader's list stays at exactly SEED_TASKS tasks for both servers throughout.
READER_ID = 1
WRITER_ID = 2
SEED_DESCRIPTION = (
    "A benchmark task with a realistic description: what to do, why it matters, "
    "and a note or two for later, about as long as people actually write them."
)
# Tasks made for the delete scenario: enough for this many times the fastest one-row rate.
DELETE_SUPPLY_FACTOR = 2.0
ONE_ROW = ("get", "create", "update", "toggle")
# A scenario whose connections were busy less than this share of the time gets a note, unless
# its mean latency is over EDGE_SHARE of the run: then the requests left unanswered at the end
# explain the gap.
STALLED_SHARE = 0.75
EDGE_SHARE = 0.05
SETTLE_TIMEOUT_S = 60.0
# Other work using more than this share of the machine's CPU during a scenario gets a note.
FOREIGN_CPU_WARNING = 0.10
SETTLE_POLL_S = 0.2


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    connections: int
    threads: int
    workers: int
    scenarios: tuple[str, ...]
    admin_url: str


@dataclass(frozen=True)
class ScenarioResult:
    load: WrkResult
    memory: MemoryPeaks
    # The share of the machine's CPU that went to work other than the benchmark's.
    foreign_cpu_share: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetRun:
    target: str
    started_at: str
    list_bytes: int
    scenarios: dict[str, ScenarioResult]

    @property
    def max_worker_mib(self) -> float:
        return max(result.memory.max_worker_mib for result in self.scenarios.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def bench_target(target: Target, options: Options, wrk: str) -> TargetRun:
    target.prepare()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{target.name}-") as tmp,
        fresh_database(options.admin_url) as database_url,
    ):
        workdir = Path(tmp)
        secret = secrets.token_urlsafe(48)
        port = free_port()
        launch = target.launch(database_url, secret, port, options.workers)
        tokens = {user: target.token(database_url, secret, user) for user in (READER_ID, WRITER_ID)}
        progress(f"{target.name}: starting on port {port} with {options.workers} workers")
        with (
            running(launch, workdir / "server.log") as server,
            ApiClient(port, READER_ID, tokens[READER_ID]) as reader,
        ):
            server.wait_ready(launch, reader.answers)
            progress(f"{target.name}: seeding {SEED_TASKS} tasks")
            reader_ids = workdir / "reader-ids.txt"
            write_ids(reader_ids, seed(reader))
            list_bytes = checked_list_size(reader)
            load = scenario_load(
                wrk, port, options.connections, options.threads, tokens, reader_ids
            )
            runner = Runner(target.name, server, database_url, load, options, workdir)
            scenarios = runner.run()
    return TargetRun(target.name, started_at, list_bytes, scenarios)


def scenario_load(
    wrk: str, port: int, connections: int, threads: int, tokens: dict[int, str], reader_ids: Path
) -> Load:
    """wrk's settings for the scenarios: the reader's and the writer's ids and tokens."""
    return Load(
        wrk=wrk,
        url=f"http://{HOST}:{port}",
        connections=connections,
        threads=threads,
        env={
            "BENCH_READER_ID": str(READER_ID),
            "BENCH_READER_TOKEN": tokens[READER_ID],
            "BENCH_WRITER_ID": str(WRITER_ID),
            "BENCH_WRITER_TOKEN": tokens[WRITER_ID],
            "BENCH_READER_IDS": str(reader_ids),
        },
    )


def seed(reader: ApiClient) -> list[int]:
    return [
        reader.create_task(f"Seed task {n:04d}", SEED_DESCRIPTION) for n in range(1, SEED_TASKS + 1)
    ]


def checked_list_size(reader: ApiClient) -> int:
    """The size of the list response, once it is seen to hold exactly the seeded tasks."""
    body = reader.list_body()
    listed = len(json.loads(body))
    if listed != SEED_TASKS:
        raise BenchError(f"the list has {listed} tasks after seeding {SEED_TASKS}")
    return len(body)


def write_ids(path: Path, ids: list[int]) -> None:
    path.write_text("".join(f"{task_id}\n" for task_id in ids))


def read_ids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


class Runner:
    """Runs the chosen scenarios in order against one started, seeded server."""

    def __init__(
        self,
        name: str,
        server: Server,
        database_url: str,
        load: Load,
        options: Options,
        workdir: Path,
    ) -> None:
        self._name = name
        self._server = server
        self._database_url = database_url
        self._load = load
        self._options = options
        self._created_ids = workdir / "created-ids.txt"
        self._delete_ids = workdir / "delete-ids.txt"

    def run(self) -> dict[str, ScenarioResult]:
        if self._options.warmup:
            progress(f"{self._name}: warming up with mixed for {self._options.warmup} s")
            self._load.run("mixed", self._options.warmup)
        results: dict[str, ScenarioResult] = {}
        for scenario in self._options.scenarios:
            if scenario == "delete":
                results[scenario] = self._measure_deletes(results)
            else:
                env = {"BENCH_CREATED_IDS": str(self._created_ids)} if scenario == "create" else {}
                results[scenario] = self._measure(scenario, env)
        return results

    def _measure(self, scenario: str, env: dict[str, str]) -> ScenarioResult:
        self._settle()
        progress(f"{self._name}: {scenario} for {self._options.duration} s")
        since_reset = self._server.reset_memory_peaks()
        start = cpu.snapshot(self._server.pid)
        load = self._load.run(scenario, self._options.duration, env)
        foreign = cpu.foreign_share(start, self._server.pid, self._database_url)
        notes = []
        if self._stalled(load):
            notes.append(
                f"on average only {load.busy_connections:.0f} of {self._options.connections} "
                "connections had a request in flight: requests stalled (wrk counts none of "
                "those still unanswered at the end)"
            )
        if foreign > FOREIGN_CPU_WARNING:
            notes.append(
                f"other work on the machine used {foreign:.0%} of its CPU meanwhile: "
                "these figures are not comparable"
            )
        memory = self._server.memory_peaks(since_reset)
        return ScenarioResult(load, memory, foreign, tuple(notes))

    def _stalled(self, load: WrkResult) -> bool:
        short_latencies = load.latency_ms["mean"] / 1000 <= EDGE_SHARE * load.seconds
        busy = load.busy_connections >= STALLED_SHARE * self._options.connections
        return short_latencies and not busy

    def _settle(self) -> None:
        """Until the previous load has drained: wrk does not wait for the requests still in
        flight when it stops, and they would weigh on the next scenario."""
        self._server.wait_idle()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while busy_sessions(self._database_url):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the database was still busy {SETTLE_TIMEOUT_S:.0f} s after the load stopped"
                )
            time.sleep(SETTLE_POLL_S)

    def _measure_deletes(self, results: dict[str, ScenarioResult]) -> ScenarioResult:
        supply = self._make_tasks_to_delete(results)
        write_ids(self._delete_ids, supply)
        result = self._measure("delete", {"BENCH_DELETE_IDS": str(self._delete_ids)})
        if result.load.requests > len(supply):
            note = f"ran out of the {len(supply)} tasks made to delete: the rest were 404s"
            return replace(result, notes=(*result.notes, note))
        return result

    def _make_tasks_to_delete(self, results: dict[str, ScenarioResult]) -> list[int]:
        """The writer's tasks from the create scenario, topped up by unmeasured create runs."""
        ids: list[int] = []
        create_rate: float | None = None
        if "create" in results:
            ids = read_ids(self._created_ids)
            create_rate = results["create"].load.requests_per_second
        while True:
            if create_rate is None:
                seconds = self._options.duration
            else:
                missing = self._deletes_needed(results, create_rate) - len(ids)
                if missing <= 0:
                    return ids
                seconds = ceil(missing / create_rate) + 1
            progress(f"{self._name}: creating tasks to delete for {seconds} s")
            self._load.run("create", seconds, {"BENCH_CREATED_IDS": str(self._created_ids)})
            made = read_ids(self._created_ids)
            if not made:
                raise BenchError("the create run made no task, so there is nothing to delete")
            ids.extend(made)
            create_rate = len(made) / seconds

    def _deletes_needed(self, results: dict[str, ScenarioResult], create_rate: float) -> int:
        # A delete is a one-row write like create, update and toggle, and can be as fast as a
        # get or faster. Twice the fastest of those rates leaves room for it.
        rates = [create_rate]
        rates += [results[name].load.requests_per_second for name in ONE_ROW if name in results]
        return ceil(DELETE_SUPPLY_FACTOR * max(rates) * self._options.duration)
