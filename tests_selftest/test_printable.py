"""A backend's terminal escapes and control characters are cleaned where records
are gathered (xpuperf.results, xpuperf.records.printable), so that pytest's own
failure output, the summary table, the result JSONs and report.html all get
text: no ESC to recolour or wipe the terminal, no NUL in the page."""
from __future__ import annotations

import re

import pytest

from tests_selftest.test_report_folder import _collector, _finish
from xpuperf.records import ITEM_KEY, RECORD_KEY, printable
from xpuperf.results import ResultCollector

# What a vendor SDK's log line carries: colours, a screen wipe, a window title, a NUL.
HOSTILE = "\x1b[31mcompile failed\x1b[0m: \x1b[2J\x1b[Hwiped \x1b]0;pwned\x07node\x00 7\r\n\tdone"
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_printable_drops_escapes_and_shows_other_controls():
    assert printable(HOSTILE) == "compile failed: wiped node\\x00 7\n\tdone"
    assert printable({"k\x1b[1m": ["a\x07", ("b\x1b",), 3, None]}) == \
        {"k": ["a\\x07", ("b\\x1b",), 3, None]}


def _failed_compile(collector: ResultCollector) -> pytest.TestReport:
    """A compile item that failed with the backend's raw message, as pytest reports it."""
    with pytest.raises(RuntimeError) as excinfo:
        raise RuntimeError(HOSTILE)
    nodeid = "suites/compiler_coverage/test_compile.py::test_compile[clean-conv-fake-fp32]"
    identity = {"suite": "compile", "combination": "clean-conv-fake-fp32", "model": "clean-conv",
                "dataset": "fake", "precision": "fp32", "hardware": "CPU"}
    record = {"status": "failed", "error": HOSTILE, "fallback_ops": ["Conv\x1b[0m"]}
    report = pytest.TestReport(nodeid, ("suites/a.py", 1, nodeid), {}, "failed",
                               excinfo.getrepr(), "call",
                               sections=[("Captured stdout call", HOSTILE)],
                               user_properties=[(ITEM_KEY, identity), (RECORD_KEY, record)])
    collector.pytest_runtest_logreport(report)
    return report


def test_the_terminal_the_json_and_the_page_get_clean_text(tmp_path):
    collector, state = _collector(tmp_path)
    report = _failed_compile(collector)
    # pytest's own failure output: the traceback, its crash message, captured output.
    assert not CONTROLS.search(str(report.longrepr).replace("\n", ""))
    assert report.longrepr.reprcrash.message == \
        "RuntimeError: compile failed: wiped node\\x00 7\n\tdone"
    assert not CONTROLS.search(report.sections[0][1].replace("\n", "").replace("\t", ""))
    # The record, and what is written and printed from it.
    record = next(iter(collector.records.values()))
    assert record["error"] == "compile failed: wiped node\\x00 7\n\tdone"
    assert record["fallback_ops"] == ["Conv"]
    _finish(collector, exitstatus=1)
    written = [state.report_dir / "report.html",
               *state.report_dir.glob("*/result-*.json")]
    assert len(written) == 2
    for path in written:
        data = path.read_bytes()
        assert b"\x1b" not in data and b"\x00" not in data, path
        assert b"wiped node" in data, path
    lines: list[str] = []
    collector.pytest_terminal_summary(_Terminal(lines))
    assert "wiped node" in "\n".join(lines)
    assert not CONTROLS.search("".join(lines))


class _Terminal:
    """What pytest_terminal_summary writes through, kept as lines."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def section(self, title: str, **_kw) -> None:
        self.lines.append(title)

    def write_line(self, line: str, **_kw) -> None:
        self.lines.append(line)
