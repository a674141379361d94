"""Keeping freed memory: a training step stops faulting fresh pages from the system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

STEPS = """
import resource, sys, torch
from ebreg._fast.allocator import keep_freed_memory_if_enabled
from ebreg.config import ModelConfig, TrainConfig
from ebreg.engine import EBMTrainer
print(keep_freed_memory_if_enabled())
torch.manual_seed(0)
module = EBMTrainer(ModelConfig(), TrainConfig())
x, y = torch.randn(64, 1), torch.randn(64, 1)
def step():
    sum(v.mean() for v in module.losses(x, y).values()).backward()
for _ in range(5):  # the heap grows to its working size
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_step(keep: bool) -> tuple[bool, float]:
    env = {**os.environ, "EBREG_KEEP_MALLOC": "1" if keep else "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_kept_memory_removes_the_page_faults_of_a_training_step() -> None:
    applied, kept = _faults_per_step(True)
    skipped, default = _faults_per_step(False)
    assert applied and not skipped
    # measured (batch 64, six pairs of runs): 930-1300 faults per step with glibc's defaults, 0-64 kept
    assert kept < default / 4, (kept, default)


UNTOUCHED = """
import torch
from ebreg import fit
from ebreg._fast import allocator
from ebreg.config import ModelConfig, TrainConfig
from ebreg.inference import predict_mean
result = fit(ModelConfig(), TrainConfig(epochs=1, num_samples=8), torch.randn(32, 1), torch.randn(32, 1), progress=False)
predict_mean(result.module.ebm, torch.randn(4, 1), 8)
print(allocator._done)
"""


def test_training_and_prediction_leave_malloc_alone_unless_asked() -> None:
    env = {k: v for k, v in os.environ.items() if k != "EBREG_KEEP_MALLOC"}
    out = subprocess.run([sys.executable, "-c", UNTOUCHED], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-1] == "False"
