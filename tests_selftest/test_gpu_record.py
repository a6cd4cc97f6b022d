"""The GPU record (.ci/gpu_record.py) from what .ci/gpu-check leaves: each step's
outcome and pytest counts, a step its time limit stopped, the targets' figures,
and what did not run."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_record", ROOT / ".ci" / "gpu_record.py")
gpu_record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_record)

JUNIT = ('<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{}" failures="{}" '
         'errors="{}" skipped="{}"></testsuite></testsuites>')


def test_the_record_has_each_steps_counts_and_what_did_not_run(tmp_path: Path) -> None:
    (tmp_path / "info.json").write_text(json.dumps(
        {"date": "2026-12-04 18:00 UTC", "card": "NVIDIA H200", "driver": "580.159.04",
         "torch": "2.11.0+cu130", "dry_run": False}))
    (tmp_path / "steps.known").write_text("info\nsmoke-eager\nsmoke-compile\nllm\n")
    (tmp_path / "steps.tsv").write_text(
        "info\t0\t3\t30\tpython -c ...\n"
        "smoke-eager\t124\t150\t150\tpython -m pytest suites --backend-option mode=eager\n"
        "smoke-compile\t1\t90\t150\tpython -m pytest suites --backend-option mode=compile\n")
    (tmp_path / "smoke-eager.xml").write_text(JUNIT.format(2185, 0, 84, 1962))
    (tmp_path / "smoke-compile.xml").write_text(JUNIT.format(10, 2, 0, 3))
    (tmp_path / "targets.log").write_text("noise\n--- bert_qps\n[NVIDIA H200] 5,588 QPS\n")
    text = gpu_record.render(tmp_path)
    assert "| card | NVIDIA H200 |" in text and "| capability | unknown |" in text
    assert "| info | ok | 3 | - | - | - | - |" in text
    assert "| smoke-eager | stopped at its 150 s limit | 150 | 139 | 0 | 84 | 1962 |" in text
    assert "| smoke-compile | failed (exit 1) | 90 | 5 | 2 | 0 | 3 |" in text
    assert "[NVIDIA H200] 5,588 QPS" in text and "noise" not in text
    never = text.split("## Never run on a GPU in this record")[1].split("## Commands")[0]
    assert "`smoke-eager`: did not pass" in never and "`llm`: not selected" in never
    assert "`info`" not in never
    assert "- `smoke-compile`: `python -m pytest suites --backend-option mode=compile`" in text
