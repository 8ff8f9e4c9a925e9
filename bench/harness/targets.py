"""The two servers the benchmark knows how to run: taskd, and the seed plan's reference."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from harness import HOST, LIST_MISS, MANY_USERS, SETS, BenchError
from harness.commands import progress, run
from harness.population import Population
from harness.server import Launch
from harness.tokens import hs256_token

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_TASKD = REPO_DIR / ".venv" / "bin" / "taskd"
REFERENCE_DIR = BENCH_DIR / "reference"
REFERENCE_VENV = BENCH_DIR / ".venv-reference"
FLOOR_APP = BENCH_DIR / "floor" / "app.py"
TOKEN_TTL_S = 24 * 3600
_INTERPRETER_PROBE = (
    "import os, platform, sys; "
    "print(platform.python_version(), os.path.realpath(sys._base_executable))"
)


def interpreter(python: Path | str) -> str:
    """The interpreter that `python` (a virtualenv's, say) runs on: its version and real path.
    Builds of one version differ (one may be built with PGO and LTO, another without), so the
    two servers of a comparison run on the same one."""
    return run([str(python), "-c", _INTERPRETER_PROBE]).stdout.strip()


@dataclass(frozen=True)
class Taskd:
    executable: Path = DEFAULT_TASKD
    name: str = "taskd"
    list_cache: bool = True
    serves_metrics: bool = True
    data_sets: tuple[str, ...] = SETS

    def prepare(self) -> None:
        if not self.executable.is_file():
            raise BenchError(
                f"{self.executable} does not exist: run `make test` (or pip install .)"
            )

    def interpreter(self) -> str:
        # A console script names its interpreter on its first line.
        shebang = self.executable.read_text().splitlines()[0]
        return interpreter(shebang.removeprefix("#!").strip())

    def launch(self, database_url: str, secret: str, port: int, workers: int) -> Launch:
        return Launch(
            command=[str(self.executable), "serve", "--migrate"],
            env=self._env(database_url, secret)
            | {"API_HOST": HOST, "API_PORT": str(port), "TASKD_WORKERS": str(workers)},
            # Logged once, by the main process, when every worker serves.
            ready_line=f"listening on http://{HOST}:{port}",
            ready_count=1,
        )

    def token(self, database_url: str, secret: str, user_id: int) -> str:
        command = [
            str(self.executable),
            "token",
            "--user-id",
            str(user_id),
            "--ttl",
            str(TOKEN_TTL_S),
        ]
        return run(command, env=self._env(database_url, secret)).stdout.strip()

    @staticmethod
    def many_users_seed_sql(people: Population) -> str:
        # What taskd's writes would have left (migration 0008): each user's version counts their
        # writes, here one create per task, and each task carries the version its create took.
        # tasks.json is a generated column. The readiness probe may have provisioned a user.
        users = f"INSERT INTO users (id, version) SELECT user_id, count FROM {people.owners_sql}"  # noqa: S608
        users += " ON CONFLICT (id) DO UPDATE SET version = excluded.version;"
        return people.seed_sql(
            "tasks",
            identity="OVERRIDING SYSTEM VALUE",
            before=users,
            extra_columns={"version": "n"},
        )

    @staticmethod
    def _env(database_url: str, secret: str) -> dict[str, str]:
        return {"DATABASE_URL": database_url, "BETTER_AUTH_SECRET": secret}


@dataclass(frozen=True)
class Reference:
    """FastAPI + SQLModel + psycopg2 under uvicorn, in its own virtualenv."""

    name: str = "reference"
    list_cache: bool = False
    serves_metrics: bool = False
    data_sets: tuple[str, ...] = SETS

    def prepare(self) -> None:
        """Its virtualenv, remade when its requirements change or it was made from another
        interpreter than the one running the benchmark (which taskd's must share)."""
        requirements = REFERENCE_DIR / "requirements.txt"
        stamp = REFERENCE_VENV / "requirements.sha256"
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
        made_for = f"{digest} on {interpreter(sys.executable)}"
        python = REFERENCE_VENV / "bin" / "python"
        if python.is_file() and stamp.is_file() and stamp.read_text() == made_for:
            return
        progress(f"installing the reference into {REFERENCE_VENV.relative_to(REPO_DIR)}")
        run([sys.executable, "-m", "venv", "--clear", str(REFERENCE_VENV)])
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "-r", str(requirements)])
        stamp.write_text(made_for)

    def interpreter(self) -> str:
        return interpreter(REFERENCE_VENV / "bin" / "python")

    def launch(self, database_url: str, secret: str, port: int, workers: int) -> Launch:
        uvicorn = REFERENCE_VENV / "bin" / "uvicorn"
        return Launch(
            command=[
                str(uvicorn),
                "app.main:app",
                "--app-dir",
                str(REFERENCE_DIR),
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
            ],
            # SQLAlchemy 2.1 picks psycopg 3 for postgresql://; the seed plan uses psycopg2.
            env={
                "DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg2://", 1),
                "BETTER_AUTH_SECRET": secret,
            },
            ready_line="Application startup complete.",  # by each worker
            ready_count=workers,
        )

    def token(self, database_url: str, secret: str, user_id: int) -> str:
        return hs256_token(secret, user_id, TOKEN_TTL_S)

    @staticmethod
    def many_users_seed_sql(people: Population) -> str:
        return people.seed_sql("task")


@dataclass(frozen=True)
class Floor(Taskd):
    """taskd's data layer behind bare Tornado handlers (bench/floor/app.py), on taskd's
    interpreter, package and settings (`executable` is taskd's): what taskd's requests cost at
    the least on this stack. Its tokens are taskd's, sent and never read: it trusts the path's
    user id."""

    name: str = "floor"
    # taskd's page cache, which TASKD_LIST_CACHE_MB=0 turns off for list-miss as for taskd.
    list_cache: bool = True
    serves_metrics: bool = False
    # The sets of the targets still missed (issue 14); one-user's are met.
    data_sets: tuple[str, ...] = (LIST_MISS, MANY_USERS)

    def launch(self, database_url: str, secret: str, port: int, workers: int) -> Launch:
        python = self.executable.parent / "python"
        return replace(
            super().launch(database_url, secret, port, workers),
            command=[str(python), str(FLOOR_APP)],
            ready_line="floor worker ",  # by each worker
            ready_count=workers,
        )


class Target(Protocol):
    @property
    def name(self) -> str: ...

    def prepare(self) -> None: ...

    def interpreter(self) -> str:
        """The Python version and real path of the interpreter the server runs on."""

    def launch(self, database_url: str, secret: str, port: int, workers: int) -> Launch: ...

    @property
    def list_cache(self) -> bool:
        """Whether the server keeps list pages, so that the list-miss data set applies."""

    @property
    def serves_metrics(self) -> bool:
        """Whether it serves taskd's /metrics, which says how its page cache answered lists."""

    @property
    def data_sets(self) -> tuple[str, ...]:
        """The data sets it is measured on, of those asked for."""

    def token(self, database_url: str, secret: str, user_id: int) -> str: ...

    def many_users_seed_sql(self, people: Population) -> str: ...
