"""Tests run under thread limits (tests/conftest.py), and so does every process they start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from plantml.errors import ConfigError
from plantml.threads import THREAD_VARIABLES, limit_threads
from tests.conftest import TEST_THREADS

CHILD = """
import os, torch
print(*[os.environ.get(v) for v in {names}], os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads())
"""


def test_this_process_and_its_children_keep_the_limit():
    assert torch.get_num_threads() == TEST_THREADS
    code = CHILD.format(names=THREAD_VARIABLES)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == [str(TEST_THREADS)] * len(THREAD_VARIABLES) + ["PASSIVE", str(TEST_THREADS)]


def test_limit_threads_sets_the_environment_and_torch(monkeypatch):
    for name in (*THREAD_VARIABLES, "OMP_WAIT_POLICY"):
        monkeypatch.setenv(name, "spin")  # restored after the test
    limit_threads(2)
    assert [os.environ[v] for v in THREAD_VARIABLES] == ["2"] * len(THREAD_VARIABLES)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert torch.get_num_threads() == 2  # torch was loaded: set directly (the next test resets it)
    with pytest.raises(ConfigError, match="threads must be at least 1, got 0"):
        limit_threads(0)
