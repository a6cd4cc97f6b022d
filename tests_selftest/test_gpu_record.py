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
    (tmp_path / "steps.tsv").write_text(  # one after another
        "info\t0\t3\t30\t1000\tpython -c ...\n"
        "smoke-eager\t124\t150\t150\t1003\tpython -m pytest suites --backend-option mode=eager\n"
        "smoke-compile\t1\t90\t150\t1153\tpython -m pytest suites --backend-option mode=compile\n")
    (tmp_path / "smoke-eager.xml").write_text(JUNIT.format(2185, 0, 84, 1962))
    (tmp_path / "smoke-compile.xml").write_text(JUNIT.format(10, 2, 0, 3))
    (tmp_path / "targets.log").write_text("noise\n--- bert_qps\n[NVIDIA H200] 5,588 QPS\n")
    (tmp_path / "llm-targets.log").write_text("--- llama2_7b\n[NVIDIA H200] 1,590 output tokens/s\n")
    (tmp_path / "targets-full.log").write_text("--- bert_qps\n[NVIDIA H200] bs24 4,643 QPS\n")
    text = gpu_record.render(tmp_path)
    assert "| card | NVIDIA H200 |" in text and "| capability | unknown |" in text
    assert "| info | ok | 3 | - | - | - | - |" in text
    assert "| smoke-eager | stopped at its 150 s limit | 150 | 139 | 0 | 84 | 1962 |" in text
    assert "| smoke-compile | failed (exit 1) | 90 | 5 | 2 | 0 | 3 |" in text
    assert "[NVIDIA H200] 5,588 QPS" in text and "noise" not in text
    full = text.split("## Targets (`targets-full`: benchmarks/gpu_targets.py)")[1]
    assert "[NVIDIA H200] bs24 4,643 QPS" in full and "5,588" not in full
    llm = text.split("## Targets (`llm-targets`: benchmarks/gpu_targets.py)")[1].split("## ")[0]
    assert "[NVIDIA H200] 1,590 output tokens/s" in llm and "4,643" not in llm
    never = text.split("## Never run on a GPU in this record")[1].split("## Commands")[0]
    assert "`smoke-eager`: did not pass" in never and "`llm`: not selected" in never
    assert "`info`" not in never
    assert "- `smoke-compile`: `python -m pytest suites --backend-option mode=compile`" in text
    assert "## Where each pytest step's time went" not in text  # no item's time in those XMLs
    assert "Side by side" not in text


def test_the_record_names_the_steps_that_ran_side_by_side(tmp_path: Path) -> None:
    """The window's op cases and smoke steps run at once, so they end in any
    order: the table keeps the script's, and says which shared the card."""
    (tmp_path / "steps.known").write_text("info\nops\nsmoke-eager\nsmoke-compile\ntargets\n")
    (tmp_path / "steps.tsv").write_text(  # as they ended
        "info\t0\t4\t20\t1000\tpython .ci/gpu_record.py info\n"
        "smoke-eager\t0\t150\t280\t1004\tpython -m pytest suites -n 4\n"
        "ops\t0\t200\t280\t1004\tpython -m pytest suites/compiler_coverage/test_ops.py\n"
        "smoke-compile\t130\t281\t280\t1005\tpython -m pytest suites -n 4\n"
        "targets\t0\t100\t180\t1286\tpython benchmarks/gpu_targets.py --quick\n")
    text = gpu_record.render(tmp_path)
    steps = text.split("## Steps")[1]
    assert [line.split(" | ")[0] for line in steps.splitlines() if line.startswith("| ")
            and not line.startswith("| step")] == \
        ["| info", "| ops", "| smoke-eager", "| smoke-compile", "| targets"]
    assert "| smoke-compile | stopped at its 280 s limit | 281 |" in steps
    assert ("Side by side on the card (their seconds overlap; no figure of theirs is a step's "
            "alone): `ops`, `smoke-eager`, `smoke-compile`.") in steps


def test_the_record_says_where_a_pytest_steps_time_went(tmp_path: Path) -> None:
    """A smoke step stopped by its limit: its items' seconds by module against its
    wall time, and its slowest items first (the window's budget is planned on them)."""
    (tmp_path / "steps.tsv").write_text("smoke-eager\t130\t134\t130\t1000\tpython -m pytest suites\n")
    cases = [("suites.compiler_coverage.test_compile", "test_compile[bert-torch-squad-fp16]", 9.5),
             ("suites.accuracy.test_accuracy", "test_numerics[bert-torch-squad-fp16]", 0.3),
             ("suites.performance.test_throughput",
              "test_throughput[bert-torch-squad-fp16-bs4-offline]", 0.7)]
    cases += [("suites.performance.test_throughput",
               f"test_throughput[gru-s128-fake-fp16-bs{b}-offline]", 0.1) for b in range(9)]
    (tmp_path / "smoke-eager.xml").write_text(
        JUNIT.format(12, 0, 0, 0).replace("></testsuite>", ">" + "".join(
            f'<testcase classname="{c}" name="{n}" time="{t}" />' for c, n, t in cases)
            + "</testsuite>"))
    text = gpu_record.render(tmp_path)
    spent = text.split("## Where each pytest step's time went")[1].split("##")[0].strip()
    assert spent.startswith("- `smoke-eager` (134 s): 11.4 s in its items (test_compile 9.5 s, "
                            "test_throughput 1.6 s, test_accuracy 0.3 s), 122.6 s outside them "
                            "(start, collection, reports); slowest: "
                            "`test_compile[bert-torch-squad-fp16]` 9.50 s, "
                            "`test_throughput[bert-torch-squad-fp16-bs4-offline]` 0.70 s, "
                            "`test_numerics[bert-torch-squad-fp16]` 0.30 s, "), spent
    assert spent.count("gru-s128") == gpu_record.SLOWEST - 3


def test_a_step_in_xdist_workers_sums_its_items_past_its_wall_time(tmp_path: Path) -> None:
    """Four workers ran 40 s of items in 12 s: no time is "outside" them."""
    (tmp_path / "steps.tsv").write_text("smoke-eager\t0\t12\t280\t1000\tpytest -n 4\n")
    (tmp_path / "smoke-eager.xml").write_text(
        JUNIT.format(4, 0, 0, 0).replace("></testsuite>", ">" + "".join(
            f'<testcase classname="suites.accuracy.test_accuracy" name="test_numerics[m{k}]" '
            f'time="10" />' for k in range(4)) + "</testsuite>"))
    spent = gpu_record.render(tmp_path).split("## Where each pytest step's time went")[1]
    assert ("- `smoke-eager` (12 s): 40.0 s in its items (test_accuracy 40.0 s), summed over "
            "the pytest workers that ran them at once; slowest: ") in spent
