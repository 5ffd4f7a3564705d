"""Fixtures shared by the test modules: `cpu`, one CPU runtime per module (the reference side of the
GPU tests' agreement checks), and `rng`, a fresh unseeded generator per test (every run draws new
inputs). A module may define its own fixture of the same name, which then wins."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.runtime.cpu import CpuRuntime


@pytest.fixture(scope="module")
def cpu() -> CpuRuntime:
    return CpuRuntime()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()
