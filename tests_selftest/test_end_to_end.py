"""Whole sessions on a tiny zoo: faults are caught, named, and the reports are
still written; under pytest-xdist the reports are complete."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_ZOO = """\
defaults:
  tolerances: {fp32: {max_abs: 1.0e-3, min_cosine: 0.9999}}
datasets:
  fake: {id: fake, format: fake}
  open_criteo_kaggle: {id: criteo, format: criteo, sample: open_criteo_kaggle/train.txt}
models:
  tiny-bert:
    family: bert
    framework: torch
    domain: nlp
    builder: bert_qa
    config: {vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, max_position_embeddings: 16}
    dataset: fake
    dataset_options: {samples: 6}
    inputs:
      - {name: input_ids, shape: [batch, 8], dtype: int64, range: [0, 50]}
      - {name: attention_mask, shape: [batch, 8], dtype: int64, range: [1, 2]}
      - {name: token_type_ids, shape: [batch, 8], dtype: int64, range: [0, 2]}
    outputs: [start_logits, end_logits]
    batch_sizes: [2]
    precisions: [fp32]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "zoo.yaml").write_text(TINY_ZOO)
    return folder


def run_suites(folder: Path, hardware: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "suites", "-q",
         "--zoo", str(folder / "zoo.yaml"), "--hardware", hardware,
         "--cache-dir", str(folder / "cache"), "--report-dir", str(folder / hardware),
         "--benchmark-disable", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def result(folder: Path, hardware: str) -> dict:
    return json.loads((folder / hardware / "tiny-bert" / "result-fp32.json").read_text())


def test_a_nan_output_fails_numerics_by_name_and_reports_are_written(tiny):
    hw = "tests_selftest.fakes:NanBackend"
    r = run_suites(tiny, hw)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "FAILED suites/accuracy/test_accuracy.py::test_numerics[tiny-bert-fake-fp32]" in r.stdout
    assert "start_logits: 3 NaN and 0 Inf values" in r.stdout  # one per batch of 2, 6 samples
    assert "1 failed" in r.stdout and "passed" in r.stdout  # compile and throughput still pass
    assert (tiny / hw / "report.html").is_file()
    res = result(tiny, hw)
    assert res["Status"] == "failed" and res["Suites"]["numerics"] == "failed"
    assert "NaN" in json.dumps(res)


def test_a_compile_failure_fails_compile_and_its_dependants_with_the_reason(tiny):
    hw = "tests_selftest.fakes:NoCompileBackend"
    r = run_suites(tiny, hw)
    assert r.returncode == 1
    assert "FAILED suites/compiler_coverage/test_compile.py::test_compile[tiny-bert-fake-fp32]" in r.stdout
    assert r.stdout.count("no kernel for op Erf") >= 2  # the compile item and its dependants
    res = result(tiny, hw)
    assert res["Graph Compile"]["Status"] == "failed"
    assert "no kernel for op Erf" in json.dumps(res)


def test_reports_are_complete_under_xdist(tiny):
    r = run_suites(tiny, "CPU", "-n", "2", "--dist", "loadgroup")
    assert r.returncode == 0, r.stdout[-3000:]
    res = result(tiny, "CPU")
    assert set(res["Suites"]) == {"compile", "metric", "numerics", "performance"}
    assert res["Suites"]["metric"] == "skipped"  # fake data has no task metric
    assert res["Performance"] and res["Performance"][0]["QPS"] > 0
