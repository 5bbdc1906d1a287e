"""``npuc tune`` and ``npuc build --tuning-db`` as a user runs them (subprocesses).

The end-to-end case tunes a small convolution graph for a few trials (a few
minutes on 2 shared cores: marked slow), builds with the database and checks
the outputs against onnxruntime and the tuned-kernel count against what
``npuc tune`` recorded. Bad options and databases must give one ``error:``
line naming the path and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.backend.cpu.small_models import conv_two_outputs, save
from tests.npuc.test_cli_build_run import npuc as run_npuc
from tests.tooling.reference import run_onnxruntime

RTOL, ATOL = 1e-5, 1e-5  # fp32 3x3 convolution, summed in different orders
EXIT_INVALID_INPUT = 3


def npuc(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_npuc(*args, cwd=cwd, timeout_s=1200)  # tuning runs take minutes


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tune")
    save(conv_two_outputs(), folder, "conv")
    np.save(folder / "x.npy", np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype("f4"))
    return folder


def _refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: "), proc.stderr
    for word in words:
        assert word in first, proc.stderr


def test_help_lists_the_budget_flags(work: Path) -> None:
    proc = npuc("tune", "--help", cwd=work)
    assert proc.returncode == 0
    for flag in ("--db", "--trials", "--time-budget", "--tasks", "--json"):
        assert flag in proc.stdout
    assert "--tuning-db" in npuc("build", "--help", cwd=work).stdout


def test_build_with_missing_database_names_it(work: Path) -> None:
    proc = npuc("build", "conv.onnx", "-o", "c.so", "--tuning-db", "nowhere", cwd=work)
    _refused(proc, "nowhere", "no such folder")
    assert proc.returncode == EXIT_INVALID_INPUT
    assert not (work / "c.so").exists()


def test_build_with_corrupt_database_names_it(work: Path) -> None:
    bad = work / "bad_db"
    bad.mkdir()
    (bad / "database_workload.json").write_text("garbage {\n")
    (bad / "database_tuning_record.json").write_text("")
    proc = npuc("build", "conv.onnx", "-o", "c.so", "--tuning-db", "bad_db", cwd=work)
    _refused(proc, "bad_db", "corrupt")
    assert proc.returncode == EXIT_INVALID_INPUT


def test_tuning_db_with_int8_is_refused(work: Path) -> None:
    proc = npuc(
        "build", "conv.onnx", "--precision", "int8", "--tuning-db", "x", "-o", "q.so", cwd=work
    )
    _refused(proc, "--tuning-db")


def test_tune_refuses_bad_options(work: Path) -> None:
    (work / "afile").write_text("")
    _refused(npuc("tune", "conv.onnx", "--db", "afile", cwd=work), "afile", "not a folder")
    _refused(npuc("tune", "conv.onnx", "--db", "d", "--trials", "0", cwd=work), "trials")
    _refused(npuc("tune", "missing.onnx", "--db", "d", cwd=work), "missing.onnx")


@pytest.mark.slow
def test_tune_then_build_uses_the_records_and_matches_onnxruntime(work: Path) -> None:
    tuned = npuc(
        "tune", "conv.onnx", "--db", "db", "--trials", "8", "--tasks", "1",
        "--time-budget", "120", "--seed", "1", "--json", cwd=work,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    result = json.loads(tuned.stdout)
    assert result["trials"] >= 1 and result["tuned_tasks"] == 1
    task = result["tasks"][0]
    assert task["name"] == "fused_conv2d_add" and task["hand_us"] > 0
    # A record is kept only when it timed faster than the hand rule's kernel.
    assert task["used"] == (task["tuned_us"] is not None and task["tuned_us"] < task["hand_us"])
    assert json.loads((work / "db" / "tuning.json").read_text())["used"] == result["used"]

    built = npuc("build", "conv.onnx", "-o", "t.so", "--tuning-db", "db", "--json", cwd=work)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["schedules"].get("tuned", 0) == result["used"]

    ran = npuc("run", "t.so", "--input", "x=x.npy", "--output", "t.npz", cwd=work)
    assert ran.returncode == 0, ran.stderr
    want = run_onnxruntime(str(work / "conv.onnx"), {"x": np.load(work / "x.npy")})
    got = np.load(work / "t.npz")
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL)
