"""Shared fixtures (the paths to ../shared's toy and UCI data, a seeded generator) and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOY_DIR = SHARED / "data" / "toy"
UCI_DIR = SHARED / "data" / "uci"


@pytest.fixture
def toy_dir() -> Path:
    if not (TOY_DIR / "toy2_test.npz").exists():
        pytest.skip(f"reference toy data not found at {TOY_DIR} (../shared is absent)")
    return TOY_DIR


@pytest.fixture
def uci_dir() -> Path:
    if not (UCI_DIR / "concrete" / "data.txt").exists():
        pytest.skip(f"UCI data not found at {UCI_DIR} (../shared is absent)")
    return UCI_DIR


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def graph_nodes(out: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``out`` (``from conftest import graph_nodes``)."""
    names, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None:
            names.add(type(node).__name__)
            todo += [f for f, _ in node.next_functions]
    return names
