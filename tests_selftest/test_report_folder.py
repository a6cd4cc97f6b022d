"""The report folder never lies (xpuperf/report_folder.py): files are written
whole or not at all, a failed write shows in session.json and the exit status,
an earlier session's report stays until this session has a result, two sessions
never mix in one folder, and a folder that cannot be written is a usage error."""
from __future__ import annotations

import errno
import json
import os
import pathlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests_selftest.sessions import conv_zoo, run_session
from xpuperf import report_folder
from xpuperf.options import RunConfig
from xpuperf.records import ITEM_KEY
from xpuperf.results import ResultCollector
from xpuperf.zoo import ZooError, load_zoo, parse_zoo

EARLIER_HTML = "<p>an earlier session's report: all passed</p>"


def _earlier_report(folder: Path) -> None:
    """What a finished earlier session left in ``folder``."""
    (folder / "clean-conv").mkdir(parents=True)
    (folder / "clean-conv" / "result-fp32.json").write_text('{"Status": "passed"}')
    (folder / "report.html").write_text(EARLIER_HTML)
    report_folder.write(folder, {"finished": True, "status": "complete",
                                 "ended": "2026-01-01 00:00:00 +0000"})


def _collector(tmp_path: Path) -> tuple[ResultCollector, RunConfig]:
    zoo = load_zoo(conv_zoo(tmp_path, {"clean-conv": ""}) / "zoo.yaml")
    state = RunConfig(zoo=zoo, hardware="CPU", entry=None, options={},
                        report_dir=tmp_path / "report")
    state.report_dir.mkdir()
    return ResultCollector(state), state


def _pass(collector: ResultCollector, model: str, dataset: str = "fake") -> None:
    """One compile item of ``model`` reported passed, as pytest reports it."""
    identity = {"suite": "compile", "combination": f"{model}-{dataset}-fp32", "model": model,
                "dataset": dataset, "precision": "fp32", "hardware": "CPU"}
    nodeid = f"suites/compiler_coverage/test_compile.py::test_compile[{model}-{dataset}-fp32]"
    for when in ("setup", "call", "teardown"):
        collector.pytest_runtest_logreport(pytest.TestReport(
            nodeid, ("suites/a.py", 1, nodeid), {}, "passed", None, when,
            user_properties=[(ITEM_KEY, identity)]))


def _finish(collector: ResultCollector, exitstatus: int = 0) -> SimpleNamespace:
    session = SimpleNamespace(exitstatus=exitstatus, config=SimpleNamespace(
        option=SimpleNamespace(keyword="", markexpr=""), rootpath=Path(__file__).parents[1]))
    collector.pytest_sessionfinish(session, exitstatus)
    return session


def test_a_full_disk_leaves_no_cut_file_and_session_json_and_the_exit_status_say_so(
        tmp_path, monkeypatch):
    collector, state = _collector(tmp_path)
    _earlier_report(state.report_dir)
    _pass(collector, "clean-conv")
    real = pathlib.Path.write_text

    def disk_fills_up(path: Path, text: str, *args, **kwargs) -> int:
        if path.name.startswith(".report.") and path.suffix == ".html":  # half way through the page
            real(path, text[:len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, text, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "write_text", disk_fills_up)
    with pytest.warns(UserWarning, match="xpuperf could not write its reports"):
        session = _finish(collector)
    monkeypatch.undo()
    report = state.report_dir
    assert not (report / "report.html").exists()  # cleared for this session, never half written
    assert not list(report.glob(".*.tmp*"))
    manifest = report_folder.read(report)
    assert manifest["finished"] is False and manifest["exit_status"] == session.exitstatus == 3
    assert manifest["reports"].startswith("NOT written: OSError: [Errno 28]")
    assert "No space left on device" in collector.report_error


def test_reports_written_whole_say_so(tmp_path):
    collector, state = _collector(tmp_path)
    _pass(collector, "clean-conv")
    session = _finish(collector, exitstatus=1)
    manifest = report_folder.read(state.report_dir)
    assert manifest["finished"] is True and manifest["reports"] == "written"
    assert session.exitstatus == manifest["exit_status"] == 1
    assert json.loads((state.report_dir / "clean-conv" / "result-fp32.json").read_text())[
        "Status"] == "passed"


def test_an_earlier_report_stays_until_this_session_has_a_result(tmp_path):
    collector, state = _collector(tmp_path)
    _earlier_report(state.report_dir)
    _finish(collector, exitstatus=5)  # nothing selected
    assert (state.report_dir / "report.html").read_text() == EARLIER_HTML
    assert report_folder.read(state.report_dir)["finished"] is True
    _pass(collector, "clean-conv")  # the first result clears it, then says "not finished"
    assert not (state.report_dir / "report.html").exists()
    assert report_folder.read(state.report_dir)["finished"] is False


def test_a_second_session_on_a_locked_folder_is_told_who_holds_it(tmp_path):
    held = report_folder.lock(tmp_path, "the session of pid 1")
    try:
        with pytest.raises(report_folder.ReportFolderError,
                           match="the session of pid 1 is writing its reports there"):
            report_folder.lock(tmp_path, "the session of pid 2")
    finally:
        held.close()
    report_folder.lock(tmp_path, "the session of pid 2").close()  # free once the first ends


def test_a_model_and_its_llm_workload_of_one_precision_write_a_file_each(tmp_path):
    # The smoke tier's gpt2 at fp32: the zoo model's items (dataset fake) and the
    # LLM workload's (dataset prompts) wrote one gpt2/result-fp32.json, the second
    # over the first, while the terminal counted two files.
    collector, state = _collector(tmp_path)
    _pass(collector, "gpt2", "fake")
    _pass(collector, "gpt2", "prompts")
    _finish(collector)
    results = sorted(state.report_dir.glob("gpt2/result-*.json"))
    assert [p.name for p in results] == ["result-fp32-prompts.json", "result-fp32.json"]
    assert sorted(json.loads(p.read_text())["Combination"] for p in results) == \
        ["gpt2-fake-fp32", "gpt2-prompts-fp32"]
    assert len(set(collector.written)) == len(collector.written) == 3  # the page and two results


@pytest.mark.parametrize("names,says", [
    (("x/conv",), "zoo.yaml:4: models.x/conv: the name 'x/conv' names the entry's result folder"),
    (("x conv",), "zoo.yaml:4: models.x conv: the name 'x conv'"),
    (("x-conv", "X-conv"), "zoo.yaml:5: models.X-conv: differs from models.x-conv only in case"),
])
def test_model_names_that_would_share_a_result_file_are_refused_at_load(names, says):
    entries = "".join(f"  {n}: {{family: conv}}\n" for n in names)
    text = "datasets:\n  fake: {id: fake, format: fake}\nmodels:\n" + entries
    with pytest.raises(ZooError) as e:
        parse_zoo(text)
    assert str(e.value).startswith(says), e.value


def test_an_llm_workload_name_that_is_no_path_component_is_refused_at_load():
    from tests_selftest.test_llm import ZOO  # its imports are heavy: only this test pays
    with pytest.raises(ZooError, match=r"generation\.workloads\.x/tiny: the name 'x/tiny'"):
        parse_zoo(ZOO.replace("    tiny:\n", "    x/tiny:\n"))


# --------------------------------------------------------------------------- whole sessions

def test_a_k_that_selects_nothing_keeps_the_last_report_and_says_so(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": ""})
    _earlier_report(folder / "report")
    r = run_session(folder, "CPU", "-k", "no-such-model", report="report")
    assert r.returncode == 5, r.stdout[-2000:] + r.stderr[-2000:]  # no tests ran
    assert (folder / "report" / "report.html").read_text() == EARLIER_HTML
    assert (folder / "report" / "clean-conv" / "result-fp32.json").exists()
    assert f"{folder / 'report'} keeps the reports of an earlier session (ended " \
           "2026-01-01 00:00:00 +0000: complete)" in r.stdout


def test_a_second_session_on_a_folder_in_use_stops_at_its_first_result_naming_the_first(
        tmp_path):
    collector, state = _collector(tmp_path)
    _earlier_report(state.report_dir)
    session = SimpleNamespace(shouldstop=False)
    collector.pytest_sessionstart(session)
    held = report_folder.lock(state.report_dir, "the xpuperf session of pid 1 (started then)")
    try:
        _pass(collector, "clean-conv")
        says = "the xpuperf session of pid 1 (started then) is writing its reports there"
        assert says in session.shouldstop  # pytest stops after this item
        assert _finish(collector, exitstatus=2).exitstatus == 3
    finally:
        held.close()
    assert says in collector.report_error
    # The other session's folder is untouched.
    assert (state.report_dir / "report.html").read_text() == EARLIER_HTML
    assert report_folder.read(state.report_dir)["finished"] is True


def test_a_read_only_folder_is_a_usage_error(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": ""})
    readonly = folder / "readonly"
    readonly.mkdir(mode=0o555)
    if os.access(readonly, os.W_OK):  # root writes anywhere: a /proc folder refuses new files
        readonly = Path("/proc/self/fdinfo")
    r = run_session(folder, "CPU", "-k", "no-such-model", report=str(readonly))
    assert r.returncode == 4 and "INTERNALERROR" not in r.stdout + r.stderr, r.stderr[-2000:]
    assert f"--report-dir: {readonly}: cannot write in it: " in r.stderr
