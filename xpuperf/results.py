"""Result collection: every item's record gathered from its report (in the
controller: pytest-xdist forwards workers' reports there), and at the end of the
session the reports written and the terminal summary printed, whatever the
items' outcomes. ``ResultCollector`` is registered by xpuperf.plugin."""
from __future__ import annotations

import re
import time
import warnings

import pytest

from xpuperf import report_folder
from xpuperf.conformance import expected
from xpuperf.plugin import PluginState
from xpuperf.records import ITEM_KEY, RECORD_KEY


def _message(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash else str(report.longrepr)[-500:]


def _run_label(interrupted: bool, keyword: str, markexpr: str) -> str:
    """What report.html and session.json say of how much of the zoo the run covers."""
    if interrupted:
        return "interrupted: the results are of the items that ran"
    chosen = [f"{flag} {value!r}" for flag, value in (("-k", keyword), ("-m", markexpr)) if value]
    return f"a subset: {', '.join(chosen)}" if chosen else "complete"


class ResultCollector:
    """Registered in the controller only: gathers records from every item's report
    (pytest-xdist forwards workers' reports here) and writes the reports at the end,
    whatever the items' outcomes."""

    def __init__(self, state: PluginState):
        self.state = state
        self.selected: int | None = None  # items selected; None under pytest-xdist
        self.deselected = 0

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items or not getattr(session.config.option, "numprocesses", None):
            self.selected = len(session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if ITEM_KEY not in props and report.nodeid not in self.state.records:
            return  # not a zoo item, or one that crashed pytest-xdist's worker before setup
        rec = self.state.records.setdefault(report.nodeid, dict(props.get(ITEM_KEY, {})))
        before = (rec.get("outcome"), rec.get("message"))
        rec.update(props.get(RECORD_KEY, {}))
        if report.when == "call":
            rec["outcome"], rec["message"] = report.outcome, _message(report)
        elif report.failed and report.when in ("setup", "teardown"):
            rec["outcome"], rec["message"] = "error", f"{report.when}: {_message(report)}"
        elif report.failed:  # pytest-xdist's report of a worker that died running it
            rec["outcome"], rec["message"] = "error", f"the pytest-xdist worker crashed: " \
                                                      f"{_message(report)}"
        elif report.skipped:
            rec["outcome"], rec["message"] = "skipped", _message(report)
        if hasattr(report, "wasxfail"):
            rec["outcome"], rec["expected_failure"] = "xfailed", True
            # Why, as the expected-failures file's line says it (without the marker's
            # "listed in ..." around it): the reports show it beside the outcome.
            name = report.nodeid.rsplit("::", 1)[-1]
            rec["expected_reason"] = self.state.expected.get(name) or report.wasxfail
        if before[0] in ("failed", "error") and rec["outcome"] not in ("failed", "error"):
            # pytest-xdist ran it again after its worker crashed: the first failure stands.
            rec["outcome"] = before[0]
            rec["message"] = f"{before[1]} (then run again by pytest-xdist, which it passed)"
        if self.state.update_expected:
            self._note_outcome(report)

    def _note_outcome(self, report: pytest.TestReport) -> None:
        """What --update-expected-failures writes: the reason of a failure (an
        expected one included), else None: the item passed (a strict xfail that
        passed included) or skipped, and either way does not fail."""
        name = report.nodeid.rsplit("::", 1)[-1]
        xpassed = report.failed and str(report.longrepr).startswith("[XPASS(strict)]")
        if hasattr(report, "wasxfail") or (report.failed and not xpassed):
            # The first line of the reason, without the exception type pytest puts first.
            reason = (_message(report) or "failed").splitlines()[0]
            self.state.outcomes[name] = re.sub(r"^(AssertionError|Failed): ", "", reason)
        elif report.skipped or (report.when == "call" and (report.passed or xpassed)):
            self.state.outcomes[name] = None

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        for rec in state.records.values():
            if "outcome" not in rec:  # set up, never reported done
                rec["outcome"], rec["message"] = "error", (
                    "interrupted (SIGTERM or Ctrl-C) while it ran" if interrupted
                    else "it never finished: no result was reported")
        option = session.config.option
        run_label = _run_label(interrupted, option.keyword, option.markexpr)
        try:
            report_folder.write(state.report_dir, {
                **report_folder.read(state.report_dir), "status": run_label,
                "finished": exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED),
                "exit_status": int(exitstatus), "hardware": state.hardware,
                "tier": state.zoo.tier, "ended": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "selection": {"-k": option.keyword or None, "-m": option.markexpr or None,
                              "items": self.selected, "deselected": self.deselected}})
        except OSError as e:  # said in the summary; the reports below may still be written
            state.report_error = f"{report_folder.MANIFEST}: {e}"
        if state.update_expected and state.outcomes and state.expected_path:
            path = state.expected_path
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            path.write_text(expected.updated(old, state.outcomes, (
                f"Items the {state.hardware} backend is known to fail (see xpuperf/conformance/expected.py).\n"
                "One pytest item name a line, then 'if [not] CAPABILITY' where the outcome\n"
                "depends on the host; '#' starts the reason."), state.capabilities),
                encoding="utf-8")
        if not state.records:
            return
        from xpuperf.report import write_reports, zoo_version
        # Which tier and zoo ran: xpuperf compare refuses to join runs that differ.
        run = {"tier": state.zoo.tier, "zoo_version": zoo_version(state.zoo.path),
               "run": run_label}
        try:
            info = {**state.entry.load()().info(), **run}
        except Exception as e:  # noqa: BLE001 - a report without host info beats no report
            info = {"name": state.hardware, "info_error": str(e), **run}
        try:
            state.written = write_reports(list(state.records.values()), state.report_dir,
                                          state.hardware, info,
                                          session.config.rootpath / "report_templates")
        except Exception as e:  # noqa: BLE001 - say so in the summary, not as a traceback
            state.report_error = f"{type(e).__name__}: {e}"
            warnings.warn(f"xpuperf could not write its reports: {state.report_error}")

    # Last, after pytest-benchmark's tables: the summary a user reads first.
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        state = self.state
        if not state.records:
            return
        from xpuperf.report.ops import op_table
        from xpuperf.report.summary import summarize
        from xpuperf.report.terminal import table

        tr = terminalreporter
        tr.section(f"xpuperf: {state.hardware}, {state.zoo.tier} tier")
        records = list(state.records.values())
        rows = summarize(r for r in records if r.get("suite") != "op")
        if rows:
            tr.write_line(table(rows))
        ops = op_table(records)
        if ops.rows:
            tr.write_line(f"op conformance: {ops.passed}/{ops.cases} cases passed "
                          f"({100 * ops.pass_rate:.1f} %) over {len(ops.rows)} ops; "
                          f"{ops.expected} expected failure(s), {ops.unexpected} unexpected",
                          red=bool(ops.unexpected))
        if state.update_expected and state.outcomes:
            tr.write_line(f"expected failures rewritten from this run: {state.expected_label}")
        if state.baseline is not None:
            compared = [r for r in state.records.values() if "baseline" in r]
            regressed = [r for r in compared if "against the baseline" in str(r.get("message"))]
            tr.write_line(f"baseline {state.baseline.source}: {len(compared)} item(s) compared, "
                          f"{len(regressed)} regressed (--max-regression {state.max_regression:g}%)",
                          red=bool(regressed))
        if state.report_error:
            tr.write_line(f"reports NOT written: {state.report_error}", red=True)
        elif state.written:
            tr.write_line(f"reports: {state.report_dir / 'report.html'} and "
                          f"{len(state.written) - 1} JSON file(s)")
