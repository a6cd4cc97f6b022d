"""Fault injection: whole sessions over a zoo of tiny convolutions with a backend
that crashes, hangs, raises and breaks the output contract per model
(faulty_backends.py), damaged cache entries, broken datasets and weights, and a
SIGTERM. Each ends as failed or errored items with the reason, in the terminal,
report.html and the result JSONs; the other combinations pass; the session
completes and its report folder holds nothing older that claims a pass."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests_selftest.sessions import ROOT, conv_zoo, run_session, session_command
from tests_selftest.test_llm import ZOO as LLM_ZOO
from xpuperf import gate, report_folder
from xpuperf.cache import Cache
from xpuperf.options import RunConfig
from xpuperf.results import ResultCollector
from xpuperf.records import ITEM_KEY
from xpuperf.worker import budget
from xpuperf.worker.contract import ContractError, check_outputs
from xpuperf.zoo import TensorSpec

FAULTY = "tests_selftest.faulty_backends:FaultyBackend"
HANG_LIMIT = "    timeout_s: 12\n"  # the zoo's per-model limit: a hang costs 12 s, not the tier's
# Model -> the fault FaultyBackend injects into it; clean-conv has none.
FAULTS = {"segrun-conv": "segfault_run", "hangrun-conv": "hang_run",
          "segcomp-conv": "segfault_compile", "hangcomp-conv": "hang_compile",
          "raise-conv": "raise_compile", "fp16-conv": "fp16_outputs",
          "none-conv": "none_outputs", "scalar-conv": "scalar_outputs",
          "missing-conv": "missing_output", "wide-conv": "wide_outputs"}
QUICK = ("--benchmark-disable",)
# Made slow in the parent by tests_selftest.slow_parent. After clean-conv, whose
# export (the session's first, seconds on a busy host) warms torch.onnx under the
# tier's limit; slowref-conv's seed gives it a reference of its own.
SLOW_PARENT = {"slowref-conv": "    seed: 7\n    timeout_s: 10\n",
               "slowexport-conv": "    timeout_s: 10\n"}


def fault_options(models) -> list[str]:
    return [a for m in models for a in ("--backend-option", f"fault:{m}={FAULTS[m]}")]


def result(report: Path, model: str) -> dict:
    return json.loads((report / model / "result-fp32.json").read_text())


def messages(report: Path, model: str) -> str:
    return "\n".join(result(report, model)["Messages"])


def assert_passed(report: Path, model: str) -> None:
    res = result(report, model)
    assert res["Status"] == "passed", res["Messages"]


# --------------------------------------------------------------------------- one serial session

@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """Every backend fault in one session, clean-conv beside them, and two models
    whose export and reference run in the parent are slow (SLOW_PARENT); the
    report folder holds an earlier run's files that claim a pass."""
    folder = tmp_path_factory.mktemp("faults")
    hangs = {m: HANG_LIMIT for m in FAULTS if FAULTS[m].startswith("hang")}
    conv_zoo(folder, {"clean-conv": "", **{m: hangs.get(m, "") for m in FAULTS}, **SLOW_PARENT})
    report = folder / "report"
    for model in ("segrun-conv", "gone-conv"):  # an earlier run's "passed" results
        (report / model).mkdir(parents=True)
        (report / model / "result-fp32.json").write_text('{"Status": "passed"}')
    (report / "report.html").write_text("<p>earlier run: all passed</p>")
    r = run_session(folder, FAULTY, *QUICK, *fault_options(FAULTS), "-p",
                    "tests_selftest.slow_parent", report="report", timeout_s=240)
    return r, report


def test_the_session_completes_with_failures_and_the_clean_model_passes(faulty_run):
    r, report = faulty_run
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    assert_passed(report, "clean-conv")
    manifest = json.loads((report / "session.json").read_text())
    assert manifest["finished"] is True and manifest["status"] == "complete"


def test_nothing_older_in_the_report_folder_claims_a_pass(faulty_run):
    _, report = faulty_run
    assert not (report / "gone-conv").exists()
    assert result(report, "segrun-conv")["Status"] == "failed"
    assert "earlier run" not in (report / "report.html").read_text()


def test_a_segfault_in_run_fails_the_group_with_the_signal_and_the_stack(faulty_run):
    r, report = faulty_run
    res = result(report, "segrun-conv")
    assert res["Suites"]["compile"] == "passed"
    assert res["Suites"]["numerics"] == res["Suites"]["performance"] == "failed"
    text = messages(report, "segrun-conv")
    assert "killed by SIGSEGV while running batch 1 of the accuracy run" in text
    assert "faulty_backends.py" in text and "in segfault" in text  # faulthandler's stack
    assert "not run: an earlier item of segrun-conv-fake-fp32 lost the backend's worker" in text
    assert "SIGSEGV" in (report / "report.html").read_text()


def test_a_hang_in_run_ends_at_the_time_limit(faulty_run):
    _, report = faulty_run
    text = messages(report, "hangrun-conv")
    assert "ran past its time limit of 12 s while running batch 1" in text
    assert "--item-timeout" in text  # how to raise it
    assert result(report, "hangrun-conv")["Suites"]["numerics"] == "failed"


# The models share one compile-cache entry (the same graph), which clean-conv made:
# the faults strike while the backend loads it.
@pytest.mark.parametrize("model, reason", [
    ("segcomp-conv", "killed by SIGSEGV while loading the compiled model from the compile cache"),
    ("hangcomp-conv", "ran past its time limit of 12 s while loading the compiled model"),
    # A plain exception keeps the backend's traceback, down to the helper that raised.
    ("raise-conv", "in _parse_ratio"),
])
def test_a_compile_fault_fails_compile_and_its_dependants(faulty_run, model, reason):
    r, report = faulty_run
    res = result(report, model)
    assert res["Suites"]["compile"] == "failed" and res["Graph Compile"]["Status"] == "failed"
    assert res["Suites"]["numerics"] == "error"
    assert reason in messages(report, model)
    assert f"FAILED suites/compiler_coverage/test_compile.py::test_compile[{model}-fake-fp32]" \
        in r.stdout


@pytest.mark.parametrize("model, reason", [
    ("fp16-conv", "output 'output': dtype float16; the zoo declares float32"),
    ("none-conv", "Compiled.run returned NoneType None; the contract is a dict of numpy arrays"),
    ("scalar-conv", "output 'output': Compiled.run returned float"),
    ("missing-conv", "Compiled.run returned outputs ['output_renamed']; the zoo declares "
                     "['output'] (missing ['output']) (not declared ['output_renamed'])"),
    # The zoo declares no shape: the graph's fixed axes hold (numerics failed on a
    # bare "shape mismatch" and performance passed).
    ("wide-conv", "output 'output': shape (2, 4, 6, 7) for a batch of 2; the model's graph "
                  "has (2, 4, 6, 6)"),
])
def test_outputs_that_break_the_contract_say_what_came_back(faulty_run, model, reason):
    _, report = faulty_run
    res = result(report, model)
    assert res["Suites"]["numerics"] == res["Suites"]["performance"] == "failed"
    assert res["Suites"]["compile"] == "passed"
    assert reason in messages(report, model)


# --------------------------------------------------------------------------- pytest-xdist

def test_a_segfault_under_xdist_fails_its_items_with_the_reason_in_a_subset(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": "", "segrun-conv": ""})
    r = run_session(folder, FAULTY, *QUICK, "-n", "2", "--dist", "loadgroup", "-k", "conv",
                    *fault_options(["segrun-conv"]), report="report", timeout_s=180)
    assert r.returncode == 1, r.stdout[-3000:]
    assert_passed(folder / "report", "clean-conv")
    res = result(folder / "report", "segrun-conv")
    assert res["Suites"]["numerics"] == "failed"
    assert "killed by SIGSEGV" in messages(folder / "report", "segrun-conv")
    html = (folder / "report" / "report.html").read_text()
    assert "SIGSEGV" in html
    assert "a subset: -k &#39;conv&#39;" in html  # a -k run says it is one


# --------------------------------------------------------------------------- SIGTERM

def test_sigterm_ends_the_session_as_ctrl_c_does_and_the_reports_are_written(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": "", "hangrun-conv": ""})
    marker = tmp_path / "hanging"
    proc = subprocess.Popen(
        session_command(folder, FAULTY, *QUICK, *fault_options(["hangrun-conv"]), report="report"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "FAULT_MARKER": str(marker)})
    try:
        deadline = time.monotonic() + 150
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the backend never reached its hang"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, out[-3000:]  # pytest's "interrupted"
    report = folder / "report"
    assert_passed(report, "clean-conv")
    assert "interrupted (SIGTERM or Ctrl-C) while it ran" in messages(report, "hangrun-conv")
    manifest = json.loads((report / "session.json").read_text())
    assert manifest["finished"] is False and manifest["status"].startswith("interrupted")
    assert "interrupted" in (report / "report.html").read_text()


# --------------------------------------------------------------------------- damaged cache

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
               key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", [_flip, _truncate], ids=["16-bytes-flipped", "truncated"])
def test_a_damaged_cache_entry_is_rebuilt_with_a_warning_never_blamed(tmp_path, damage):
    folder = conv_zoo(tmp_path, {"clean-conv": ""})
    first = run_session(folder, "CPU", *QUICK, report="report")
    assert first.returncode == 0, first.stdout[-3000:]
    cache = folder / "cache"
    damaged = [_largest_file(e) for kind in ("onnx", "compiled", "reference")
               for e in (cache / kind).iterdir() if e.is_dir() and not e.name.startswith(".")]
    assert len(damaged) >= 3
    for path in damaged:
        damage(path)
    again = run_session(folder, "CPU", *QUICK, report="report")
    assert again.returncode == 0, again.stdout[-3000:]
    assert_passed(folder / "report", "clean-conv")
    for path in damaged:  # each named in a warning, and rebuilt
        assert f"cache entry {path.parent}" in again.stdout.replace("\n", ""), again.stdout[-3000:]


def test_temporary_folders_of_dead_writers_are_removed(tmp_path):
    child = subprocess.Popen(["true"])  # its pid: a writer that has exited
    child.wait()
    leftover = tmp_path / "onnx" / f".abc-{child.pid}-x1y2"
    live = tmp_path / "onnx" / f".abc-{os.getpid()}-x1y2"
    for folder in (leftover, live):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"half")
    Cache(tmp_path)
    assert not leftover.exists() and live.exists()


# --------------------------------------------------------------------------- setup errors

def zoo_line(zoo: Path, model: str, key: str) -> int:
    """The line of ``key`` in ``model``'s entry."""
    lines = zoo.read_text().splitlines()
    start = lines.index(f"  {model}:")
    return next(i + 1 for i in range(start, len(lines)) if lines[i].startswith(f"    {key}:"))


def test_dataset_and_weights_errors_are_setup_errors_with_file_and_line(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    (tmp_path / "data" / "broken").mkdir(parents=True)
    (tmp_path / "data" / "broken" / "val_map.txt").write_bytes(b"\xff\xfe garbage")
    # weights: /dev/zero hung the session, its digest reading forever.
    folder = conv_zoo(tmp_path, {"clean-conv": "", "weights-conv": "    weights: bad.pt\n",
                                 "data-conv": "    dataset: broken\n",
                                 "zero-conv": "    weights: /dev/zero\n"},
                      datasets="  broken: {id: broken, format: imagenet, path: broken}\n")
    r = run_session(folder, "CPU", *QUICK, "--data-dir", str(tmp_path / "data"), report="report")
    assert r.returncode == 1, r.stdout[-3000:]
    report = folder / "report"
    assert_passed(report, "clean-conv")
    assert "weights /dev/zero is not a regular file or a folder" in messages(report, "zero-conv")
    for model, key in (("weights-conv", "weights"), ("data-conv", "dataset"),
                       ("zero-conv", "weights")):
        res = result(report, model)
        assert res["Suites"]["compile"] == "error", res["Messages"]  # not a compile failure
        assert res["Graph Compile"]["Status"] != "failed"
        where = f"zoo.yaml:{zoo_line(folder / 'zoo.yaml', model, key)}: models.{model}.{key}"
        assert where in messages(report, model)
        assert f"ERROR suites/compiler_coverage/test_compile.py::test_compile[{model}" in r.stdout


# --------------------------------------------------------------------------- usage

def test_a_report_dir_under_a_file_is_a_usage_error(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": ""})
    (folder / "afile").write_text("x")
    r = run_session(folder, "CPU", report="afile/reports")
    assert r.returncode == 4 and "INTERNALERROR" not in r.stderr + r.stdout
    assert "is a file, not a folder" in r.stderr


def test_the_output_contract_names_what_came_back_against_the_declaration():
    declared = (TensorSpec("y", (-1, 3), "float32", "y"),)
    good = {"y": np.zeros((2, 3), np.float32)}
    assert check_outputs(good, declared, 2) is good
    for bad, says in [({"y": np.zeros((2, 4), np.float32)}, "shape (2, 4) for a batch of 2"),
                      ({"y": np.zeros((2, 3), np.float16)}, "dtype float16"),
                      ({"y": [[0.0] * 3] * 2}, "returned list"),
                      ({"y": good["y"], "z": good["y"]}, "not declared ['z']"),
                      ((good["y"],), "returned tuple")]:
        with pytest.raises(ContractError, match=re.escape(says)):
            check_outputs(bad, declared, 2)


def test_the_output_contract_holds_the_graphs_fixed_axes_where_the_zoo_declares_no_shape():
    declared = (TensorSpec("y", (), "float32", "y"), TensorSpec("s", (), "float32", "s", None,
                                                                 batched=False))
    graph = {"y": (None, None, 3), "s": (4,)}  # a free sequence axis, then 3 fixed
    good = {"y": np.zeros((2, 5, 3), np.float32), "s": np.zeros(4, np.float32)}
    assert check_outputs(good, declared, 2, graph) is good
    assert check_outputs({**good, "y": np.zeros((2, 9, 3), np.float32)}, declared, 2, graph)
    for bad, says in [({**good, "y": np.zeros((2, 5, 4), np.float32)},
                       "output 'y': shape (2, 5, 4) for a batch of 2; the model's graph has "
                       "(2, ?, 3)"),
                      ({**good, "y": np.zeros((2, 15), np.float32)}, "shape (2, 15)"),
                      ({**good, "s": np.zeros(5, np.float32)},
                       "output 's': shape (5,); the model's graph has (4,) (the output has no "
                       "batch axis)")]:
        with pytest.raises(ContractError, match=re.escape(says)):
            check_outputs(bad, declared, 2, graph)
    # Without the graph's shapes (rank unknown) the batch axis is all there is to hold.
    assert check_outputs({**good, "y": np.zeros((2, 15), np.float32)}, declared, 2, {"y": None})


# --------------------------------------------------------------------------- pytest-xdist's reports

def _report(nodeid: str, when: str, outcome: str, longrepr=None, props=()) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("suites/a.py", 1, nodeid), {}, outcome, longrepr, when,
                             user_properties=list(props))


def test_an_item_run_again_by_xdist_after_a_crash_keeps_its_first_failure(tmp_path):
    state = RunConfig(zoo=None, hardware="CPU", entry=None, options={}, report_dir=tmp_path)
    collector = ResultCollector(state)
    nodeid = "suites/a.py::test_numerics[m-fake-fp32]"
    item = [(ITEM_KEY, {"suite": "numerics", "combination": "m-fake-fp32"})]
    collector.pytest_runtest_logreport(_report(nodeid, "setup", "passed", props=item))
    # What pytest-xdist reports for a worker that died running it: no properties, when "???".
    crash = "worker 'gw0' crashed while running 'suites/a.py::test_numerics[m-fake-fp32]'"
    collector.pytest_runtest_logreport(_report(nodeid, "???", "failed", crash))
    for when in ("setup", "call", "teardown"):  # the run again, which passes
        collector.pytest_runtest_logreport(_report(nodeid, when, "passed", props=item))
    record = collector.records[nodeid]
    assert record["outcome"] == "error"
    assert record["message"].startswith(f"the pytest-xdist worker crashed: {crash}")
    assert record["message"].endswith("(then run again by pytest-xdist, which it passed)")


def test_the_baseline_is_only_a_finished_run(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "result-fp32.json").write_text('{"Backend": "CPU", "Status": "passed"}')
    report_folder.write(tmp_path, {"finished": False, "status": "interrupted: ..."})
    with pytest.raises(gate.BaselineError, match="does not hold a finished run"):
        gate.load_baseline(tmp_path, "CPU")
    (tmp_path / report_folder.MANIFEST).unlink()  # a session that died leaves one; none is no better
    with pytest.raises(gate.BaselineError, match="does not hold a finished run"):
        gate.load_baseline(tmp_path, "CPU")


# --------------------------------------------------------------------------- the audits

def test_a_wrong_non_batch_shape_fails_the_audits_too(tmp_path):
    """The audits keep no outputs, so each holds one batch to the contract first."""
    folder = conv_zoo(tmp_path, {"wide-conv": ""})
    zoo = folder / "zoo.yaml"
    zoo.write_text(zoo.read_text().replace("    peak_gemm: 32\n",
                                           "    peak_gemm: 32\n    audits: {rounds: 8, block: 1}\n"))
    r = run_session(folder, FAULTY, *QUICK, "-k", "test_audit", *fault_options(["wide-conv"]),
                    report="report")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    audits = result(folder / "report", "wide-conv")["Audits"]
    assert [a["Status"] for a in audits] == ["failed"] * 3, audits
    for audit in audits:
        assert "shape (2, 4, 6, 7) for a batch of 2; the model's graph has (2, 4, 6, 6)" in \
            audit["Message"]


# --------------------------------------------------------------------------- LLM items

def test_a_segfault_in_an_llm_engine_fails_its_group_and_the_session_goes_on(tmp_path):
    # The engines ran in the pytest process: the segfault killed it (exit 139),
    # with no report and the following workload never run.
    zoo = yaml.safe_load(LLM_ZOO)  # test_llm's tiny workload, twice, two quick scenarios
    tiny = {**zoo["generation"]["workloads"]["tiny"], "scenarios": ["offline", "single_stream"],
            "concurrency": [1]}
    zoo["generation"]["workloads"] = {"crashy": tiny, "tiny": tiny}
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    r = run_session(tmp_path, FAULTY, "--backend-option", "fault:crashy=segfault_generate",
                    target="suites/llm", report="report", timeout_s=240)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 failed, 3 passed" in r.stdout, r.stdout[-3000:]
    assert set(re.findall(r"FAILED \S+\[(\S+)\]", r.stdout)) == {
        "crashy-fp32", "crashy-fp32-in8-out4-c1-offline", "crashy-fp32-in8-out4-single_stream"}
    assert "the backend's worker process was killed by SIGSEGV while building and warming up " \
           "the engine for crashy-fp32; its last output:" in r.stdout
    assert "Fatal Python error: Segmentation fault" in r.stdout  # faulthandler's, in the worker
    # The group's two later items, each failed with it (the terminal table quotes it too).
    assert r.stdout.count("not run: an earlier item of crashy-fp32 lost the backend's worker") >= 2
    report = tmp_path / "report"
    crashy = json.loads((report / "crashy" / "result-fp32.json").read_text())
    assert crashy["Status"] == "failed" and "SIGSEGV" in "\n".join(crashy["Messages"])
    assert json.loads((report / "tiny" / "result-fp32.json").read_text())["Status"] == "passed"
    assert "SIGSEGV" in (report / "report.html").read_text()
    assert json.loads((report / "session.json").read_text())["finished"] is True


# --------------------------------------------------------------------------- time limits

def test_the_parents_export_and_reference_run_within_the_item_time_limit(faulty_run):
    # Both ran unchecked in the parent: each 120 s export or reference
    # (tests_selftest/slow_parent.py) held the session 120 s past the limit.
    _, report = faulty_run
    for model, what in (("slowexport-conv", "builder: the model's making"),
                        ("slowref-conv", "framework: the torch reference run")):
        assert f"models.{model}.{what}" in messages(report, model)
        assert "ran past its time limit of 10 s" in messages(report, model)
    assert result(report, "slowexport-conv")["Suites"]["compile"] == "error"
    assert result(report, "slowref-conv")["Suites"]["numerics"] == "error"


# --------------------------------------------------------------------------- memory

def test_outputs_past_the_memory_budget_are_refused_and_the_audit_keeps_fewer(tmp_path,
                                                                              monkeypatch):
    # A 1 GB output per batch peaked at ~6x in memory and the accuracy audit kept
    # 16 logged outputs; here 1,152 bytes per batch of 2, two batches.
    from xpuperf.worker.host import GroupHost

    folder = conv_zoo(tmp_path, {"big-conv": ""})
    zoo = folder / "zoo.yaml"  # with audits: 16 measured queries, all logged before
    zoo.write_text(zoo.read_text().replace(
        "    peak_gemm: 32\n", "    peak_gemm: 32\n    audits: {rounds: 8, block: 2}\n"))
    host = GroupHost(lambda text: None, hardware="CPU", options={}, zoo=str(folder / "zoo.yaml"),
                     tier="full", cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path),
                     model="big-conv", precision="fp32")
    try:
        assert host.compile()["report"]["status"] == "ok"
        monkeypatch.setenv(budget.ENV, "2000")
        with pytest.raises(budget.OutputsTooLarge) as refused:
            host.outputs()
        assert str(refused.value).startswith(
            "big-conv: its outputs for the dataset take 2.2 KiB (1.1 KiB per batch of 2, 2 "
            "batches), over the 2.0 KiB the worker may keep")
        assert "dataset_options" in str(refused.value) and budget.ENV in str(refused.value)
        monkeypatch.setenv(budget.ENV, "2400")  # the outputs, and two logged queries
        verdict = host.audit("accuracy")
    finally:
        host.close()
    assert verdict["passed"] and verdict["figures"]["logged_queries"] == 2
