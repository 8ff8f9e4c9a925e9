"""One target's run: per data set a fresh database, server, seed, warm-up, the scenarios, then
teardown."""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from math import ceil
from pathlib import Path

from harness import HOST, LIST_MISS, MANY_USERS, ONE_USER, BenchError, cpu
from harness.api import ApiClient, list_cache_lookups
from harness.commands import progress
from harness.population import (
    HEAVY_TASKS,
    MIXED_WEIGHTS,
    TASK_DESCRIPTION,
    TASKS,
    USERS,
    ZIPF_S,
    population,
)
from harness.postgres import busy_sessions, fresh_database, run_script
from harness.server import Launch, MemoryPeaks, Server, running
from harness.targets import TOKEN_TTL_S, Target
from harness.tokens import hs256_token
from harness.wrk import Load, WrkResult

SCENARIOS = ("list", "get", "create", "update", "toggle", "delete", "mixed")
NO_LIST_CACHE = {"TASKD_LIST_CACHE_MB": "0"}
SEED_TASKS = 1000
# The reader owns the seeded tasks; the writer gets every task the load creates, so the
# reader's list stays at exactly SEED_TASKS tasks for both servers throughout.
READER_ID = 1
WRITER_ID = 2
# Tasks made for a scenario's deletes: enough for this many times the fastest one-row rate.
DELETE_SUPPLY_FACTOR = 2.0
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
    sets: tuple[str, ...]
    admin_url: str


@dataclass(frozen=True)
class ScenarioResult:
    load: WrkResult
    memory: MemoryPeaks
    # The share of the machine's CPU that went to work other than the benchmark's.
    foreign_cpu_share: float
    # cpu.speed_probe_ms() just before the load: how fast the machine's cores ran then.
    speed_probe_ms: float
    notes: tuple[str, ...] = ()
    # taskd's list-page-cache lookups during the scenario, by outcome (none for the reference).
    list_cache: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SetRun:
    """One target's figures on one data set."""

    target: str
    data_set: str
    started_at: str
    # What the data looks like, for the report's title.
    shape: str
    # The size of a 1000-task list response.
    list_bytes: int
    scenarios: dict[str, ScenarioResult]

    @property
    def max_worker_mib(self) -> float:
        return max(result.memory.max_worker_mib for result in self.scenarios.values())


@dataclass(frozen=True)
class TargetRun:
    target: str
    # Target.interpreter(): what the server ran on.
    interpreter: str
    sets: dict[str, SetRun]

    @property
    def max_worker_mib(self) -> float:
        return max(run.max_worker_mib for run in self.sets.values())


@dataclass(frozen=True)
class Workload:
    """What drives a data set's scenarios: a wrk script per scenario, or one plan per scenario
    for bench/wrk/plan.lua, and the share of each scenario's requests that delete a task."""

    warmup: str
    env: dict[str, str]
    plans: Path | None = None
    delete_shares: dict[str, float] = field(default_factory=lambda: {"delete": 1.0})

    def script(self, scenario: str) -> tuple[str, dict[str, str]]:
        if self.plans is None:
            return scenario, {}
        return "plan", {"BENCH_PLAN": str(self.plans / f"{scenario}.txt")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def set_scenarios(data_set: str, options: Options) -> tuple[str, ...]:
    if data_set == LIST_MISS:
        return tuple(name for name in options.scenarios if name == "list")
    return options.scenarios


@dataclass(frozen=True)
class Part:
    """A target's part in a data set's run: the data set it is measured on, and the options it
    is measured with (the scenarios among them)."""

    target: Target
    data_set: str
    options: Options


def bench_targets(targets: list[Target], options: Options, wrk: str) -> list[TargetRun]:
    """Every data set of `options` for `targets`, together: per data set each target gets its
    own database and server, and each scenario runs on every target in turn before the next
    scenario starts, so that they meet the machine's cores at the same speed (on a virtual
    machine that speed changes from one minute to the next)."""
    for target in targets:
        target.prepare()
    interpreters = {target.name: target.interpreter() for target in targets}
    if len(set(interpreters.values())) > 1:
        ran_on = ", ".join(f"{name} on Python {python}" for name, python in interpreters.items())
        raise BenchError(
            f"the servers would run on different interpreters ({ran_on}), whose speeds differ: "
            "install taskd with the interpreter that runs bench/run.py (make bench-compare "
            "PYTHON=... does both)"
        )
    runs: dict[str, dict[str, SetRun]] = {target.name: {} for target in targets}
    for data_set in options.sets:
        parts = []
        for target in targets:
            if data_set not in target.data_sets:
                continue
            if data_set == LIST_MISS and not target.list_cache:
                # Every list of a target without a page cache is a miss: list-miss is compared
                # with its one-user list (report.py), measured here, beside the misses, when
                # one-user itself is not asked for.
                only_list = replace(options, scenarios=set_scenarios(LIST_MISS, options))
                if ONE_USER not in options.sets and only_list.scenarios:
                    parts.append(Part(target, ONE_USER, only_list))
            elif set_scenarios(data_set, options):
                parts.append(Part(target, data_set, options))
        for part, run in zip(parts, bench_set(parts, wrk), strict=True):
            runs[part.target.name][part.data_set] = run
    return [
        TargetRun(target.name, interpreters[target.name], runs[target.name]) for target in targets
    ]


@dataclass(frozen=True)
class Stage:
    """A started server of one target on its fresh database, not yet seeded."""

    target: Target
    server: Server
    launch: Launch
    database_url: str
    secret: str
    port: int
    workdir: Path

    @contextmanager
    def client(self, user_id: int, token: str) -> Iterator[ApiClient]:
        """A client of `user_id`'s tasks, once the server answers it."""
        with ApiClient(self.port, user_id, token) as client:
            self.server.wait_ready(self.launch, client.answers)
            yield client


@dataclass(frozen=True)
class Seeded:
    # What the data looks like, for the report's title.
    shape: str
    list_bytes: int
    workload: Workload


@dataclass(frozen=True)
class Staged:
    """A part's started, seeded server: the runner of its loads, and when it started."""

    part: Part
    runner: Runner
    seeded: Seeded
    started_at: str

    @property
    def scenarios(self) -> tuple[str, ...]:
        return set_scenarios(self.part.data_set, self.part.options)

    def set_run(self) -> SetRun:
        return SetRun(
            self.part.target.name,
            self.part.data_set,
            self.started_at,
            self.seeded.shape,
            self.seeded.list_bytes,
            self.runner.results,
        )


def bench_set(parts: list[Part], wrk: str) -> list[SetRun]:
    """The parts of one data set's run, each on its own database and server, all up at once;
    the scenarios in order, each run on every part in turn."""
    with ExitStack() as stack:
        staged = [stack.enter_context(_staged(part, wrk)) for part in parts]
        for one in staged:
            one.runner.warm_up()
        for scenario in SCENARIOS:
            for one in staged:
                if scenario in one.scenarios:
                    one.runner.measure(scenario)
        return [one.set_run() for one in staged]


@contextmanager
def _staged(part: Part, wrk: str) -> Iterator[Staged]:
    """A part's server started on its fresh database and seeded; stopped, and the database
    dropped, on leaving."""
    target, data_set, options = part.target, part.data_set, part.options
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    name = f"{target.name}, {data_set}"
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{target.name}-") as tmp,
        fresh_database(options.admin_url) as database_url,
    ):
        port = free_port()
        secret = secrets.token_urlsafe(48)
        launch = target.launch(database_url, secret, port, options.workers)
        if data_set == LIST_MISS:
            launch = replace(launch, env=launch.env | NO_LIST_CACHE)
        progress(f"{name}: starting on port {port} with {options.workers} workers")
        workdir = Path(tmp)
        with running(launch, workdir / "server.log") as server:
            stage = Stage(target, server, launch, database_url, secret, port, workdir)
            seeded = seed_many_users(stage) if data_set == MANY_USERS else seed_one_user(stage)
            load = Load(
                wrk=wrk,
                url=f"http://{HOST}:{port}",
                connections=options.connections,
                threads=options.threads,
                env=seeded.workload.env,
            )
            port_with_metrics = port if target.serves_metrics else None
            runner = Runner(
                name,
                server,
                database_url,
                load,
                seeded.workload,
                options,
                workdir,
                port_with_metrics,
            )
            yield Staged(part, runner, seeded, started_at)


def seed_one_user(stage: Stage) -> Seeded:
    """The reader's 1000 tasks, made through the API."""
    tokens = {
        user: stage.target.token(stage.database_url, stage.secret, user)
        for user in (READER_ID, WRITER_ID)
    }
    with stage.client(READER_ID, tokens[READER_ID]) as reader:
        progress(f"{stage.target.name}: seeding {SEED_TASKS} tasks through the API")
        reader_ids = stage.workdir / "reader-ids.txt"
        write_lines(reader_ids, [str(task_id) for task_id in seed(reader)])
        list_bytes = checked_list_size(reader, SEED_TASKS)
    workload = Workload(
        warmup="mixed",
        env={
            "BENCH_READER_ID": str(READER_ID),
            "BENCH_READER_TOKEN": tokens[READER_ID],
            "BENCH_WRITER_ID": str(WRITER_ID),
            "BENCH_WRITER_TOKEN": tokens[WRITER_ID],
            "BENCH_READER_IDS": str(reader_ids),
        },
    )
    shape = f"one user's {SEED_TASKS} tasks, a list of them is {list_bytes / 1000:.1f} KB"
    return Seeded(shape, list_bytes, workload)


def seed_many_users(stage: Stage) -> Seeded:
    """10,000 users' tasks inserted with SQL, a token per user, and a plan per scenario."""
    people = population()
    tokens_path = stage.workdir / "tokens.txt"
    tokens = {user: hs256_token(stage.secret, user, TOKEN_TTL_S) for user in range(1, USERS + 1)}
    write_lines(tokens_path, [f"{user} {token}" for user, token in tokens.items()])
    heaviest = next(user for user in people.by_rank if people.count(user) == HEAVY_TASKS)
    with stage.client(heaviest, tokens[heaviest]) as client:
        progress(f"{stage.target.name}: seeding {TASKS:,} tasks of {USERS:,} users with SQL")
        run_script(stage.database_url, stage.target.many_users_seed_sql(people))
        # The seed outlasts keep-alive timeouts (uvicorn's is 5 s): ask on a new connection.
        client.close()
        list_bytes = checked_list_size(client, HEAVY_TASKS)
    plans = stage.workdir / "plans"
    plans.mkdir()
    for scenario in SCENARIOS:
        people.write_plan(scenario, plans / f"{scenario}.txt")
    workload = Workload(
        # Gets warm the pools and the prepared statements without writing or caching lists.
        warmup="get",
        env={"BENCH_TOKENS": str(tokens_path)},
        plans=plans,
        delete_shares={"delete": 1.0, "mixed": MIXED_WEIGHTS["delete"] / 100},
    )
    shape = (
        f"{USERS:,} users, {TASKS:,} tasks, requests over users by Zipf s={ZIPF_S}: "
        f"a list holds {people.mean_listed():.0f} tasks on average, a 1000-task list is "
        f"{list_bytes / 1000:.1f} KB"
    )
    return Seeded(shape, list_bytes, workload)


def seed(reader: ApiClient) -> list[int]:
    return [
        reader.create_task(f"Seed task {n:04d}", TASK_DESCRIPTION) for n in range(1, SEED_TASKS + 1)
    ]


def checked_list_size(client: ApiClient, expected: int) -> int:
    """The size of the list response, once it is seen to hold exactly the seeded tasks."""
    body = client.list_body()
    listed = len(json.loads(body))
    if listed != expected:
        raise BenchError(f"the list has {listed} tasks after seeding {expected}")
    return len(body)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


class Runner:
    """Runs scenarios, in the order they are asked for, against one started, seeded server."""

    def __init__(
        self,
        name: str,
        server: Server,
        database_url: str,
        load: Load,
        workload: Workload,
        options: Options,
        workdir: Path,
        metrics_port: int | None = None,
    ) -> None:
        self._name = name
        self._workload = workload
        self._metrics_port = metrics_port
        self._server = server
        self._database_url = database_url
        self._load = load
        self._options = options
        # Lines `user_id task_id`: what a create load made, and what a delete load deletes.
        self._created_tasks = workdir / "created-tasks.txt"
        self._delete_tasks = workdir / "delete-tasks.txt"
        # Tasks made by creates and not yet handed to a load that deletes, with the create rate.
        self._undeleted: list[str] = []
        self._create_rate: float | None = None
        # The figures of each scenario measured so far.
        self.results: dict[str, ScenarioResult] = {}

    def warm_up(self) -> None:
        workload = self._workload
        if self._options.warmup:
            seconds = self._options.warmup
            progress(f"{self._name}: warming up with {workload.warmup} for {seconds} s")
            script, env = workload.script(workload.warmup)
            self._load.run(script, seconds, env)

    def measure(self, scenario: str) -> None:
        """Run `scenario` and keep its figures in `results`."""
        script, env = self._workload.script(scenario)
        delete_share = self._workload.delete_shares.get(scenario)
        if delete_share is None:
            self.results[scenario] = self._measure(scenario, script, env | self._recording())
        else:
            self.results[scenario] = self._measure_deletes(scenario, delete_share)
        if scenario == "create":
            self._undeleted += read_lines(self._created_tasks)
            self._create_rate = self.results[scenario].load.requests_per_second

    def _recording(self) -> dict[str, str]:
        return {"BENCH_CREATED_TASKS": str(self._created_tasks)}

    def _measure(self, scenario: str, script: str, env: dict[str, str]) -> ScenarioResult:
        self._settle()
        progress(f"{self._name}: {scenario} for {self._options.duration} s")
        since_reset = self._server.reset_memory_peaks()
        lookups_before = self._list_cache_lookups()
        speed = cpu.speed_probe_ms()
        start = cpu.snapshot(self._server.pid)
        load = self._load.run(script, self._options.duration, env)
        foreign = cpu.foreign_share(start, self._server.pid, self._database_url)
        lookups = {
            outcome: count - lookups_before.get(outcome, 0)
            for outcome, count in self._list_cache_lookups().items()
        }
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
        return ScenarioResult(load, memory, foreign, speed, tuple(notes), lookups)

    def _list_cache_lookups(self) -> dict[str, int]:
        if self._metrics_port is None:
            return {}
        return list_cache_lookups(self._metrics_port)

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

    def _measure_deletes(self, scenario: str, delete_share: float) -> ScenarioResult:
        """A scenario that deletes tasks, each once: tasks made by creates beforehand."""
        supply = self._take_tasks_to_delete(delete_share)
        write_lines(self._delete_tasks, supply)
        script, env = self._workload.script(scenario)
        env |= self._recording() | {"BENCH_DELETE_TASKS": str(self._delete_tasks)}
        result = self._measure(scenario, script, env)
        # Each wrk thread cycles through its share: once one has deleted all of it, its next
        # deletes find no task (the servers answer nothing else with 404 here).
        if result.load.statuses.get(404):
            note = f"ran out of the {len(supply)} tasks made to delete: the rest were 404s"
            return replace(result, notes=(*result.notes, note))
        return result

    def _take_tasks_to_delete(self, delete_share: float) -> list[str]:
        """Enough of the created tasks for the deletes, topped up by unmeasured create runs."""
        while True:
            if self._create_rate is None:
                seconds = self._options.duration
            else:
                needed = self._deletes_needed(delete_share)
                if len(self._undeleted) >= needed:
                    taken, self._undeleted = self._undeleted[:needed], self._undeleted[needed:]
                    return taken
                seconds = ceil((needed - len(self._undeleted)) / self._create_rate) + 1
            progress(f"{self._name}: creating tasks to delete for {seconds} s")
            script, env = self._workload.script("create")
            self._load.run(script, seconds, env | self._recording())
            made = read_lines(self._created_tasks)
            if not made:
                raise BenchError("the create run made no task, so there is nothing to delete")
            self._undeleted += made
            self._create_rate = len(made) / seconds

    def _deletes_needed(self, delete_share: float) -> int:
        # A delete is a one-row write like create, update and toggle, and can be as fast as a
        # get or faster; a mixed load as fast as its cheapest requests. Twice the fastest rate
        # measured so far leaves room for either.
        assert self._create_rate is not None
        rates = [self._create_rate]
        rates += [result.load.requests_per_second for result in self.results.values()]
        return ceil(DELETE_SUPPLY_FACTOR * delete_share * max(rates) * self._options.duration)
