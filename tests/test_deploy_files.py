"""The files an operator deploys with (CONTRACT §7) say what the code does: taskd.service, and
taskd.env.example and the README covering every setting. `make check-unit` runs systemd-analyze
on the unit; these tests check what it cannot know."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskd.config import OPTIONS, load_settings
from taskd.daemon import KILL_MARGIN
from taskd.metrics import MULTIPROC_DIR

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = [option.env for option in OPTIONS] + [MULTIPROC_DIR]


def unit_directives() -> dict[str, list[str]]:
    """taskd.service's directives, each with its values in order (some repeat)."""
    directives: dict[str, list[str]] = {}
    for line in (ROOT / "taskd.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def test_the_unit_runs_taskd_as_a_notify_service_with_migrations_first():
    unit = unit_directives()
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["EnvironmentFile"] == ["/etc/taskd/taskd.env"]
    assert unit["ExecStartPre"] == ["/opt/taskd/bin/taskd migrate"]
    assert unit["ExecStart"] == ["/opt/taskd/bin/taskd serve"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # the CLI's exit status for a bad setting
    assert unit["KillMode"] == ["mixed"]  # SIGTERM to the supervisor, which forwards it


def test_the_stop_timeout_fits_the_drain_deadline():
    [timeout] = unit_directives()["TimeoutStopSec"]
    drain = load_settings(environ={}).drain_timeout
    # systemd must not SIGKILL before the supervisor's own deadline has passed.
    assert int(timeout) > drain + KILL_MARGIN


def test_the_unit_is_sandboxed():
    unit = unit_directives()
    for directive, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert unit[directive] == [value], directive
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def env_example() -> str:
    return (ROOT / "taskd.env.example").read_text()


@pytest.mark.parametrize("variable", VARIABLES)
def test_the_env_example_documents_every_variable(variable):
    documented = re.search(rf"^#?{variable}=", env_example(), re.MULTILINE)
    assert documented, f"{variable} is missing from taskd.env.example"


def test_the_env_example_is_a_valid_configuration():
    assigned = dict(
        line.split("=", 1)
        for line in env_example().splitlines()
        if line and not line.startswith("#")
    )
    assert set(assigned) == {"DATABASE_URL", "BETTER_AUTH_SECRET"}
    settings = load_settings(environ=assigned)
    assert not settings.embedded


@pytest.mark.parametrize("variable", [option.env for option in OPTIONS])
def test_the_readme_documents_every_setting(variable):
    assert f"| `{variable}` |" in (ROOT / "README.md").read_text()
