"""`pip install` puts the `mmpool` command on PATH: the environment's bin
directory holds an entry point that runs the native program the package
ships."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import mmpool

BIN = Path(sys.executable).parent


@pytest.fixture
def command() -> Path:
    path = BIN / "mmpool"
    if not path.is_file():
        pytest.skip(f"mmpool is not installed in this environment ({BIN}); pip install . puts it there")
    return path


def run(command: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["mmpool", *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_command_on_path_prints_its_help(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mmpool <command>"), result.stdout
    assert "status" in result.stdout


def test_the_command_reports_a_shared_pool_this_process_holds(command):
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pool = mmpool.SharedPool(name, 4096)
    try:
        with pool.acquire(1000):
            result = run(command, "status", name)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert f'shared pool "{name}"' in out
        assert "total       4096 bytes" in out and "in use      1000 bytes" in out, out
        assert str(os.getpid()) in out  # this process, attached
    finally:
        mmpool.SharedPool.unlink(name)


def test_the_command_fails_as_the_native_program_does(command):
    result = run(command, "status", f"pytest-missing-{uuid.uuid4().hex[:8]}")
    assert result.returncode != 0
    assert "pytest-missing-" in result.stderr
