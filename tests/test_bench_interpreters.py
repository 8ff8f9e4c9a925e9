"""The benchmark compares taskd with the reference only on the same interpreter (bench/harness):
builds of one Python version differ in speed, so servers on two of them would not compare."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def harness(module: str = "") -> ModuleType:
    """bench/harness, or a module of it: the benchmark is not installed with taskd."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(f"harness.{module}" if module else "harness")


class Unstartable:
    """A target that can only be prepared and asked for its interpreter."""

    def __init__(self, name: str, python: str) -> None:
        self.name = name
        self.python = python

    def prepare(self) -> None:
        pass

    def interpreter(self) -> str:
        return self.python

    def __getattr__(self, attribute: str) -> NoReturn:
        raise AssertionError(f"the benchmark went on to use {attribute}")


def options(data_sets: tuple[str, ...]) -> object:
    bench = harness("bench")
    return bench.Options(
        duration=1,
        warmup=0,
        connections=1,
        threads=1,
        workers=1,
        scenarios=bench.SCENARIOS,
        sets=data_sets,
        admin_url="postgresql://unused",
    )


def test_an_interpreter_is_named_by_its_version_and_real_path() -> None:
    named = harness("targets").interpreter(sys.executable)
    assert named == f"{platform.python_version()} {os.path.realpath(sys._base_executable)}"


def test_taskd_runs_on_the_interpreter_its_console_script_names(tmp_path: Path) -> None:
    script = tmp_path / "taskd"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    targets = harness("targets")
    assert targets.Taskd(script).interpreter() == targets.interpreter(sys.executable)


def test_a_comparison_refuses_servers_on_different_interpreters() -> None:
    bench = harness("bench")
    error = harness().BenchError
    taskd = Unstartable("taskd", "3.11.2 /usr/bin/python3.11")
    reference = Unstartable("reference", "3.11.7 /opt/python/bin/python3.11")
    with pytest.raises(error, match="different interpreters") as refused:
        bench.bench_targets([taskd, reference], options(harness().SETS), wrk="wrk")
    assert "taskd on Python 3.11.2 /usr/bin/python3.11" in str(refused.value)
    assert "reference on Python 3.11.7 /opt/python/bin/python3.11" in str(refused.value)


def test_each_run_records_the_interpreter_its_server_ran_on() -> None:
    bench = harness("bench")
    python = "3.11.7 /opt/python/bin/python3.11"
    targets = [Unstartable("taskd", python), Unstartable("reference", python)]
    runs = bench.bench_targets(targets, options(()), wrk="wrk")
    assert [(run.target, run.interpreter) for run in runs] == [
        ("taskd", python),
        ("reference", python),
    ]
