"""bench/cpu_weight_modes.py's comparisons: cosine, top-1 agreement per model kind."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    path = ROOT / "bench" / "cpu_weight_modes.py"
    spec = importlib.util.spec_from_file_location("cpu_weight_modes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_weight_modes"] = module
    spec.loader.exec_module(module)
    return module


def test_cosine_of_all_outputs(bench: ModuleType) -> None:
    a = [np.array([1.0, 0.0], np.float32), np.array([[0.0]], np.float32)]
    assert bench._cosine(a, a) == pytest.approx(1.0)
    b = [np.array([0.0, 1.0], np.float32), np.array([[0.0]], np.float32)]
    assert bench._cosine(a, b) == pytest.approx(0.0)


def test_class_top1_counts_every_row(bench: ModuleType) -> None:
    ref = np.array([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]])  # 3 time steps, 2 classes
    got = np.array([[[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]]])
    assert bench._class_top1(ref, got) == (2, 3)


def test_yolo_top1_counts_only_detected_anchors(bench: ModuleType) -> None:
    ref = np.zeros((1, 4 + 2, 3))  # 4 box rows, 2 classes, 3 anchors
    ref[0, 4:, 0] = [0.9, 0.1]  # detected, class 0
    ref[0, 4:, 1] = [0.2, 0.6]  # detected, class 1
    ref[0, 4:, 2] = [0.1, 0.2]  # below the score threshold: not counted
    got = ref.copy()
    got[0, 4:, 1] = [0.7, 0.3]  # class changed
    got[0, 4:, 2] = [0.2, 0.1]
    assert bench._yolo_top1(ref, got) == (1, 2)
