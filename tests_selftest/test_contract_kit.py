"""The contract kit (xpuperf/contract_kit) fails a backend that breaks the
contract: one that drops a feed it does not know, one that returns another dtype
than declared, one that caches outputs. Each runs the kit as a vendor would."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_kit(hardware: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xpuperf.contract_kit", "-p", "no:cacheprovider", "-q",
         "--hardware", hardware, "--report-dir", str(tmp_path / "reports"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("violator, failing", [
    ("DropsFeed", "test_unknown_feed_refused[fp32]"),
    ("WrongDtype", "test_outputs_as_declared[fp32]"),
    ("CachesOutputs", "test_deterministic_and_not_cached[fp32]"),
    ("StaleResident", "test_resident_outputs_equal_run[fp32]"),
])
def test_kit_fails_a_backend_that_breaks_the_contract(violator: str, failing: str,
                                                      tmp_path: Path) -> None:
    done = run_kit(f"tests_selftest.contract_violators:{violator}", tmp_path, "-k", "fp32")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAILED xpuperf/contract_kit/test_contract.py::{failing}" in done.stdout, done.stdout


def test_kit_fails_a_ceiling_declared_in_a_form_xpuperf_cannot_read(tmp_path: Path) -> None:
    done = run_kit("tests_selftest.contract_violators:UnreadablePeak", tmp_path, "-k", "info")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "info()['peak_flops'] is '990 TFLOP/s': declare a positive number" in done.stdout, \
        done.stdout


def test_kit_fails_an_energy_counter_that_runs_backwards(tmp_path: Path) -> None:
    done = run_kit("tests_selftest.contract_violators:BackwardsMeter", tmp_path, "-k", "energy")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "a counter that does not wrap ran backwards: (9.0,) then (8.0,)" in done.stdout, \
        done.stdout


def test_kit_fails_an_own_kernel_that_computes_wrong(tmp_path: Path) -> None:
    """An op provider's registered kernel is checked against the fp64 reference."""
    done = run_kit("tests_selftest.contract_violators:WrongKernel", tmp_path, "-k", "op_provider")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the backend's own softmax computes wrong" in done.stdout, done.stdout


def test_kit_leaves_the_report_folder_alone(tmp_path: Path) -> None:
    """The kit is no zoo run: an earlier session's reports in the folder the kit
    would default to (reports/NAME) stay as they were, and nothing is added."""
    reports = tmp_path / "reports"
    (reports / "m").mkdir(parents=True)
    earlier = {reports / "session.json": '{"finished": true, "status": "complete"}\n',
               reports / "report.html": "<html>earlier</html>",
               reports / "m" / "result-fp32.json": "{}"}
    for path, text in earlier.items():
        path.write_text(text)
    done = run_kit("CPU", tmp_path, "-k", "test_info_is_complete")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p: p.read_text() for p in reports.rglob("*") if p.is_file()} == earlier


def test_the_cpu_backend_passes_the_kit(tmp_path: Path) -> None:
    """The kit on the CPU backend, whole, as README's test command ran it when it
    lived under tests_selftest (CI's lanes run it on the other in-tree backends)."""
    done = run_kit("CPU", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout, done.stdout[-3000:]
