"""The delete benchmarks still run: each one, at a tiny size, to its end.

These time nothing (figures come from full-size runs, docs/benchmarks.md); they keep the
harnesses from rotting between those runs. Each benchmark checks its own work: the delete
ends ``succeeded`` having removed exactly what was loaded, and the floors remove the same
numbers of rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GROUPS, DEVICES = 111, 2_000


def _run_bench(script: str, *args: str, timeout: float = 300) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("GROUPD_BENCH_SRC", None)  # the work tree's sources
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(params=["sqlite", "postgresql"])
def bench_db(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_url")  # skips, or fails under CI, without PostgreSQL
    return str(request.param)


def test_delete_subtree_bench_runs_to_the_end(bench_db: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    stdout = _run_bench(
        "delete_subtree.py",
        f"--db={bench_db}",
        f"--groups={GROUPS}",
        f"--devices={DEVICES}",
        "--load=sql",
        "--chunks=20:500",
        "--baseline=1",
        f"--json={out}",
    )
    (result,) = json.loads(out.read_text())["results"]
    assert (result["database"], result["groups"], result["devices"]) == (
        bench_db,
        GROUPS,
        DEVICES,
    )
    assert result["floor_s"] > 0 and result["schema_floor_s"] > 0 and result["whole_s"] > 0
    assert result["ratio"] == pytest.approx(result["whole_s"] / result["floor_s"], rel=1e-6)
    assert "summary" in stdout and '"cpu"' in stdout  # figures, and the machine they ran on


def test_delete_in_process_bench_runs_to_the_end(bench_db: str) -> None:
    stdout = _run_bench(
        "delete_in_process.py",
        f"--db={bench_db}",
        f"--groups={GROUPS}",
        f"--devices={DEVICES}",
        "--setting=delete_step_objects=300",
    )
    assert "x the floor" in stdout and "DELETE FROM objects" in stdout
    assert "the worker thread: statements" in stdout


def test_recycle_bin_bench_runs_to_the_end(bench_db: str) -> None:
    stdout = _run_bench(
        "recycle_bin.py",
        f"--db={bench_db}",
        f"--groups={GROUPS}",
        f"--devices={DEVICES}",
        "--baseline=1",
    )
    for what in ("to the bin, phase 1", "to the bin, whole", "restore", "purge", "baseline"):
        assert what in stdout
    assert "reader p99" in stdout and "writer worst" in stdout
    assert '"cpu"' in stdout  # and the machine they ran on


def test_scim_bench_runs_to_the_end(bench_db: str) -> None:
    stdout = _run_bench("scim.py", f"--db={bench_db}", "--users=2500", "--runs=3")
    for line in ("filter userName eq", "page at 1 ", "page at 1250 ", "patch +1000 members"):
        assert line in stdout, stdout
