"""pytest-benchmark's saved runs go under --report-dir when one is given: a
session then writes nothing in the working directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_report_dir_session_leaves_no_benchmarks_folder_in_the_working_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         str(ROOT / "tests_selftest" / "test_records.py"), "--zoo", str(ROOT / "zoo.yaml"),
         "--report-dir", str(tmp_path / "reports")],
        cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "reports" / ".benchmarks" / "CPU").is_dir()
