"""The many-users data set and the requests spread over it, the same for every target and run.

10,000 users own 1,000,000 tasks: 1 % of them (picked at random) 1,000 each, the others the rest,
most a few dozen (an exponential spread around their mean of about 91). Requests pick their user
by a Zipf distribution over a random ranking of the users (s = 1.1: the first user gets about
15 % of the requests, the first hundred about half), each with its own token. Everything derives
from SEED, so every run seeds the same tasks and sends the same requests.

Task ids are fixed too: user u's tasks are first_id(u) .. first_id(u) + count(u) - 1, in user
order, so the plans name tasks without asking either server.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from pathlib import Path

SEED = 20_260_114
USERS = 10_000
TASKS = 1_000_000
HEAVY_SHARE = 0.01
HEAVY_TASKS = 1000
ZIPF_S = 1.1
# Requests prepared per scenario, shared out among wrk's threads and cycled: building requests
# while the clock runs would load the client, and this many keep the Zipf spread of users.
PLAN_REQUESTS = 40_000
# Mixed: 50 % get, 20 % list, 30 % writes split evenly between create, update, toggle, delete.
MIXED_WEIGHTS = {"get": 50.0, "list": 20.0, "create": 7.5, "update": 7.5, "toggle": 7.5}
MIXED_WEIGHTS["delete"] = 7.5
# When the plan says DELETE, the Lua script takes the next task from its share of the supply.
DELETE = "DELETE"
# Seeded timestamps are fixed, not now(), so that both targets and every run hold the same rows.
SEED_EPOCH = "2026-01-01 00:00:00+00"
# Every seeded task's description, in both data sets.
TASK_DESCRIPTION = (
    "A benchmark task with a realistic description: what to do, why it matters, "
    "and a note or two for later, about as long as people actually write them."
)


@dataclass(frozen=True)
class Population:
    counts: tuple[int, ...]  # tasks of user 1, 2, ... USERS
    by_rank: tuple[int, ...]  # user ids, most requested first

    @cached_property
    def first_ids(self) -> tuple[int, ...]:
        totals = accumulate(self.counts)
        return tuple(total - count + 1 for total, count in zip(totals, self.counts, strict=True))

    @cached_property
    def _cumulative_weights(self) -> list[float]:
        return list(accumulate(rank**-ZIPF_S for rank in range(1, len(self.by_rank) + 1)))

    def count(self, user: int) -> int:
        return self.counts[user - 1]

    def zipf_users(self, rng: random.Random, k: int) -> list[int]:
        return rng.choices(self.by_rank, cum_weights=self._cumulative_weights, k=k)

    def random_task(self, rng: random.Random, user: int) -> int:
        return self.first_ids[user - 1] + rng.randrange(self.count(user))

    def mean_listed(self, limit: int = HEAVY_TASKS) -> float:
        """The mean number of tasks in a list response under the Zipf spread (pages of `limit`)."""
        weights = self._cumulative_weights
        total = weights[-1]
        previous = 0.0
        listed = 0.0
        for user, cumulative in zip(self.by_rank, weights, strict=True):
            listed += (cumulative - previous) * min(self.count(user), limit)
            previous = cumulative
        return listed / total

    def plan(self, scenario: str) -> Iterator[str]:
        """PLAN_REQUESTS lines `METHOD user_id path` for bench/wrk/plan.lua, the same every run."""
        rng = random.Random(f"{SEED}-{scenario}")
        kinds = (
            rng.choices(list(MIXED_WEIGHTS), weights=list(MIXED_WEIGHTS.values()), k=PLAN_REQUESTS)
            if scenario == "mixed"
            else [scenario] * PLAN_REQUESTS
        )
        for kind, user in zip(kinds, self.zipf_users(rng, PLAN_REQUESTS), strict=True):
            yield self._request(rng, kind, user)

    def _request(self, rng: random.Random, kind: str, user: int) -> str:
        tasks = f"/api/{user}/tasks"
        match kind:
            case "list":
                return f"GET {user} {tasks}"
            case "get":
                return f"GET {user} {tasks}/{self.random_task(rng, user)}"
            case "create":
                return f"POST {user} {tasks}"
            case "update":
                return f"PUT {user} {tasks}/{self.random_task(rng, user)}"
            case "toggle":
                return f"PATCH {user} {tasks}/{self.random_task(rng, user)}/complete"
            case "delete":
                return DELETE
        raise ValueError(f"no request for {kind}")

    @property
    def owners_sql(self) -> str:
        """A FROM item of every user's id and number of tasks: `owners (count, user_id)`."""
        counts = "{" + ",".join(map(str, self.counts)) + "}"
        return f"unnest('{counts}'::int[]) WITH ORDINALITY AS owners (count, user_id)"

    def seed_sql(
        self,
        table: str,
        *,
        identity: str = "",
        before: str = "",
        extra_columns: Mapping[str, str] | None = None,
    ) -> str:
        """SQL that inserts every task into `table` with its planned id, then moves the id
        sequence past them. `identity` goes between the column list and the SELECT (taskd's id is
        GENERATED ALWAYS: OVERRIDING SYSTEM VALUE); `before` runs first (taskd's users rows);
        `extra_columns` are more columns, each an expression over the seeded columns and `n`,
        the task's number among its user's."""
        columns = ["id", "user_id", "title", "description", "is_completed", "created_at"]
        columns += ["updated_at", *(extra_columns or {})]
        values = [*columns[:7], *(extra_columns or {}).values()]
        # S608: every piece is the harness's own constant or number, none comes from outside.
        return f"""
            {before}
            WITH seeded AS (
                SELECT before + n AS id, user_id, 'Seeded task ' || n AS title,
                       '{TASK_DESCRIPTION}' AS description, n % 4 = 0 AS is_completed,
                       timestamptz '{SEED_EPOCH}' + n * interval '1 minute' AS created_at,
                       timestamptz '{SEED_EPOCH}' + n * interval '1 minute' AS updated_at, n
                FROM (
                    SELECT user_id, count, sum(count) OVER (ORDER BY user_id) - count AS before
                    FROM {self.owners_sql}
                ) AS numbered, generate_series(1, count) AS n
            )
            INSERT INTO {table} ({", ".join(columns)})
            {identity}
            SELECT {", ".join(values)} FROM seeded;
            SELECT setval(pg_get_serial_sequence('{table}', 'id'), {sum(self.counts)});
            ANALYZE;
        """  # noqa: S608

    def write_plan(self, scenario: str, path: Path) -> None:
        path.write_text("".join(f"{line}\n" for line in self.plan(scenario)))


def population() -> Population:
    rng = random.Random(SEED)
    heavy = set(rng.sample(range(1, USERS + 1), round(USERS * HEAVY_SHARE)))
    light_total = TASKS - HEAVY_TASKS * len(heavy)
    light_users = USERS - len(heavy)
    mean = light_total / light_users
    draws = [rng.expovariate(1 / mean) for _ in range(light_users)]
    scale = light_total / sum(draws)
    light = [max(1, min(HEAVY_TASKS - 1, round(draw * scale))) for draw in draws]
    # Rounding and clipping leave the sum a little off: spread the difference one task at a time.
    difference = light_total - sum(light)
    step = 1 if difference > 0 else -1
    index = 0
    while difference:
        if 1 < light[index] + step < HEAVY_TASKS:
            light[index] += step
            difference -= step
        index = (index + 1) % light_users
    light_counts = iter(light)
    counts = tuple(
        HEAVY_TASKS if user in heavy else next(light_counts) for user in range(1, USERS + 1)
    )
    ranking = list(range(1, USERS + 1))
    rng.shuffle(ranking)
    return Population(counts, tuple(ranking))
