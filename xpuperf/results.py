"""Result collection: every item's record gathered from its report (in the
controller: pytest-xdist forwards workers' reports there), and at the end of the
session the reports written and the terminal summary printed, whatever the
items' outcomes. ``ResultCollector`` is registered by xpuperf.plugin and owns
what it gathers: the records, the outcomes --update-expected-failures writes,
the reports written and why they were not."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Any, Iterable

import pytest

from xpuperf import report_folder
from xpuperf.conformance import expected
from xpuperf.gate.judge import item_key
from xpuperf.gate.verdict import INCONCLUSIVE, REGRESSED, VERDICTS
from xpuperf.options import RunConfig
from xpuperf.records import APART, ITEM_KEY, RECORD_KEY, printable

HOST = socket.gethostname()  # where this controller runs: a record without its own host's


def _message(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash else str(report.longrepr)[-500:]


def _printable_report(report: pytest.TestReport) -> None:
    """Drop a backend's terminal escapes and control characters from what pytest
    prints of ``report`` (xpuperf.records.printable)."""
    if isinstance(report.longrepr, (str, tuple)):
        report.longrepr = printable(report.longrepr)
    elif report.longrepr is not None:
        _printable_repr(report.longrepr)
    report.sections = printable(report.sections)


def _printable_repr(obj: object) -> None:
    """The strings of one of pytest's failure representations cleaned in place:
    they are dataclasses (the chain, its tracebacks, entries, lines, the crash's
    location and message), so the failure keeps its shape and its crash message."""
    for name, value in list(getattr(obj, "__dict__", {}).items()):
        if isinstance(value, (str, list, tuple, dict)):
            setattr(obj, name, printable(value))  # the same representations inside
        for inner in _representations(value):
            _printable_repr(inner)


def _representations(value: object):
    """The failure representations in ``value`` itself or in its containers."""
    if hasattr(value, "toterminal"):
        yield value
    elif isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _representations(item)


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

    def __init__(self, run: RunConfig, clears_benchmark_json: bool = True):
        """``clears_benchmark_json``: this session writes benchmark.json in the
        report folder, so an earlier one's goes with the rest."""
        self.run = run
        # node id -> the item's record: its identity, what it recorded, its outcome.
        self.records: dict[str, dict[str, Any]] = {}
        # With --update-expected-failures: item name -> None (passed) or failure reason.
        self.outcomes: dict[str, str | None] = {}
        self.written: list[Path] = []  # the report files written
        self.report_error = ""  # why the reports were not (all) written
        self.selected: int | None = None  # items selected; None under pytest-xdist
        self.zoo_items = False  # whether any selected item is a zoo item
        self.deselected = 0
        self.clears_benchmark_json = clears_benchmark_json
        self.started = time.strftime("%Y-%m-%d %H:%M:%S %z")
        # The folder's lock from the first result on (report_folder): None before,
        # so that an earlier session's reports stay until this one has one.
        self.lock: IO | None = None
        self.session: pytest.Session | None = None
        self.benchmark_regressions: list[tuple[str, str]] = []  # --benchmark-compare-fail's

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_unconfigure(self) -> None:
        if self.lock is not None:
            self.lock.close()  # the folder is free for the next session

    def _take_folder(self) -> None:
        """At the first result: lock the report folder and clear it. A folder
        another session holds stops this one (its reports would mix with the
        other's); the summary and the exit status say so."""
        if self.lock is not None or self.report_error:
            return
        folder = self.run.report_dir
        try:
            self.lock = report_folder.lock(folder, (
                f"the xpuperf session of pid {os.getpid()} (started {self.started}: "
                f"{' '.join(sys.argv)})"))
            report_folder.clear(folder, self.clears_benchmark_json, self.started)
        except report_folder.ReportFolderError as e:
            self.report_error = str(e)
            if self.session is not None:
                self.session.shouldstop = f"xpuperf: --report-dir {e}"
        except OSError as e:
            self.report_error = f"clearing {folder}: {e}"

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items or not getattr(session.config.option, "numprocesses", None):
            self.selected = len(session.items)
        self.zoo_items = any(k == ITEM_KEY for i in session.items for k, _ in i.user_properties)

    @pytest.hookimpl(tryfirst=True)  # the terminal and other plugins get the clean text too
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _printable_report(report)
        props = printable(dict(report.user_properties))
        if ITEM_KEY not in props and report.nodeid not in self.records:
            return  # not a zoo item, or one that crashed pytest-xdist's worker before setup
        self._take_folder()
        # Its id and host (the record's own host wins: where its worker ran) from
        # the start; its seconds summed over setup, call and teardown.
        rec = self.records.setdefault(report.nodeid, {**props.get(ITEM_KEY, {}),
                                                      "item": report.nodeid, "host": HOST})
        rec["duration_s"] = rec.get("duration_s", 0.0) + report.duration
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
        if hasattr(report, "wasxfail") and not report.passed:  # passed: a 'sometimes' line
            rec["outcome"], rec["expected_failure"] = "xfailed", True
            # Why, as the expected-failures file's line says it (without the marker's
            # "listed in ..." around it): the reports show it beside the outcome.
            name = report.nodeid.rsplit("::", 1)[-1]
            listed = self.run.expected.get(name)
            rec["expected_reason"] = listed.reason if listed else report.wasxfail
        if before[0] in ("failed", "error") and rec["outcome"] not in ("failed", "error"):
            # pytest-xdist ran it again after its worker crashed: the first failure stands.
            rec["outcome"] = before[0]
            rec["message"] = f"{before[1]} (then run again by pytest-xdist, which it passed)"
        if self.run.update_expected:
            self._note_outcome(report)

    def _note_outcome(self, report: pytest.TestReport) -> None:
        """What --update-expected-failures writes: the reason of a failure (an
        expected one included), else None: the item passed (a strict xfail that
        passed included) or skipped, and either way does not fail."""
        name = report.nodeid.rsplit("::", 1)[-1]
        xpassed = report.failed and str(report.longrepr).startswith("[XPASS(strict)]")
        if (hasattr(report, "wasxfail") and not report.passed) or (report.failed and not xpassed):
            # The first line of the reason, without the exception type pytest puts first.
            reason = (_message(report) or "failed").splitlines()[0]
            self.outcomes[name] = re.sub(r"^(AssertionError|Failed): ", "", reason)
        elif report.skipped or (report.when == "call" and (report.passed or xpassed)):
            self.outcomes[name] = None

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        for rec in self.records.values():
            if "outcome" not in rec:  # set up, never reported done
                rec["outcome"], rec["message"] = "error", (
                    "interrupted (SIGTERM or Ctrl-C) while it ran" if interrupted
                    else "it never finished: no result was reported")
        self.benchmark_regressions = _benchmark_regressions(session.config)
        if self.benchmark_regressions and exitstatus == pytest.ExitCode.OK:
            # pytest returns session.exitstatus: the run fails, and session.json says so.
            session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
        option = session.config.option
        run_label = _run_label(interrupted, option.keyword, option.markexpr)
        if run.update_expected and self.outcomes and run.expected_path:
            path = run.expected_path
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            report_folder.write_text(path, expected.updated(old, self.outcomes, (
                f"Items the {run.hardware} backend is known to fail (see xpuperf/conformance/expected.py).\n"
                "One pytest item name a line, then 'if [not] CAPABILITY' where the outcome\n"
                "depends on the host; '#' starts the reason."), run.capabilities))
        if self.lock is None:  # no result, or another session's folder: it stays as it is
            if self.report_error:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        from xpuperf.report import TEMPLATES, write_reports, zoo_version
        from xpuperf.report.system import system
        # Which tier and zoo ran: xpuperf compare refuses to join runs that differ;
        # where they ran (hosts, nodes, accelerators per node).
        records = list(self.records.values())
        which = {"tier": run.zoo.tier, "zoo_version": zoo_version(run.zoo.path),
                 "run": run_label, **system(records)}
        try:
            info = {**printable(run.entry.load()().info()), **which}
        except Exception as e:  # noqa: BLE001 - a report without host info beats no report
            info = {"name": run.hardware, "info_error": str(e), **which}
        try:
            self.written = write_reports(records, run.report_dir, run.hardware, info,
                                         TEMPLATES)
            report_folder.write_text(run.report_dir / report_folder.RECORDS, json.dumps(
                {"hardware": run.hardware, "info": info, "records": records},
                indent=1, default=str) + "\n")
        except Exception as e:  # noqa: BLE001 - say so in the summary, not as a traceback
            self.report_error = self.report_error or f"{type(e).__name__}: {e}"
            warnings.warn(f"xpuperf could not write its reports: {self.report_error}")
        if self.report_error:  # a run whose reports are incomplete did not end well
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        try:  # last: it says whether the reports above were written
            report_folder.write(run.report_dir, {
                **report_folder.read(run.report_dir), "status": run_label,
                "finished": exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
                and not self.report_error,
                "exit_status": int(session.exitstatus), "hardware": run.hardware,
                "tier": run.zoo.tier, "zoo_version": which["zoo_version"],
                "commit": _commit(session.config.rootpath), "host": HOST,
                "shard": getattr(option, "shard", None),  # --shard K/N (xpuperf.shard_plugin)
                "ended": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "reports": f"NOT written: {self.report_error}" if self.report_error
                else "written",
                "selection": {"-k": option.keyword or None, "-m": option.markexpr or None,
                              "items": self.selected, "deselected": self.deselected}})
        except OSError as e:  # its earlier version, written whole, says "finished": false
            self.report_error = self.report_error or f"{report_folder.MANIFEST}: {e}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    # Last, after pytest-benchmark's tables: the summary a user reads first.
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        run = self.run
        if self.lock is None and not self.report_error:
            earlier = report_folder.read(run.report_dir)
            # Said where zoo items were asked for (or nothing was selected, as a -k
            # typo does), not after a session of xpuperf's own selftests.
            if earlier and (self.zoo_items or self.selected == 0):
                ended = (f"ended {earlier['ended']}: {earlier.get('status', '-')}"
                         if "ended" in earlier else "which did not finish")
                terminalreporter.write_line(f"xpuperf: no results in this session; "
                                            f"{run.report_dir} keeps the reports of an "
                                            f"earlier session ({ended})")
            return
        from xpuperf.report.ops import op_table
        from xpuperf.report.summary import summarize
        from xpuperf.report.terminal import table

        tr = terminalreporter
        tr.section(f"xpuperf: {run.hardware}, {run.zoo.tier} tier")
        records = list(self.records.values())
        rows = summarize(r for r in records if r.get("suite") not in APART)
        if rows:
            tr.write_line(table(rows))
        ops = op_table(records)
        if ops.rows:
            tr.write_line(f"op conformance: {ops.passed}/{ops.cases} cases passed "
                          f"({100 * ops.pass_rate:.1f} %) over {len(ops.rows)} ops; "
                          f"{ops.expected} expected failure(s), {ops.unexpected} unexpected",
                          red=bool(ops.unexpected))
        micro = [r for r in records if r.get("suite") == "micro"]
        if micro:
            counts = {o: sum(r.get("outcome") == o for r in micro)
                      for o in ("passed", "failed", "error", "skipped")}
            tr.write_line(f"micro-benchmarks: {len(micro)} case(s): "
                          + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
                          + " (micro_perf.json)", red=bool(counts["failed"] + counts["error"]))
        if run.update_expected and self.outcomes:
            tr.write_line(f"expected failures rewritten from this run: {run.expected_label}")
        if run.gate is not None:
            text, markup = gate_line(run, self.records.values())
            tr.write_line(text, **markup)
        for name, why in self.benchmark_regressions:
            tr.write_line(f"--benchmark-compare-fail: {name} regressed: {why} (pytest-benchmark "
                          "compares one run's mean or min; the speed gate compares samples: "
                          "README, 'The speed gate')", red=True)
        if self.report_error:
            tr.write_line(f"reports NOT written: {self.report_error}", red=True)
        elif self.written:
            tr.write_line(f"reports: {run.report_dir / 'report.html'} and "
                          f"{len(self.written) - 1} JSON file(s)")


def _commit(root: os.PathLike) -> str | None:
    """The checkout's commit (git rev-parse HEAD), "-dirty" after it when files
    differ; None outside a git checkout. xpuperf merge refuses shards of two."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None
    head = git("rev-parse", "HEAD")
    if head is None:
        return None
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def gate_line(run: RunConfig, records: Iterable[dict[str, Any]]) -> tuple[str, dict[str, bool]]:
    """The speed gate's terminal line: how many items it compared and each
    verdict's count, the inconclusive ones named with their effect; red when
    an item failed by it (and its markup for tr.write_line)."""
    source = (f"baseline {run.baseline.source}" if run.baseline is not None
              else "A/B baseline " + ", ".join(f"{k}={v}" for k, v in
                                               sorted((run.ab_options or {}).items())))
    compared = [r for r in records if isinstance(r.get("baseline"), dict)]
    counts = {name: sorted(item_key(r) for r in compared
                           if r["baseline"].get("verdict") == name) for name in VERDICTS}
    metric = [r for r in compared if "drop" in r["baseline"]]
    dropped = [r for r in metric if "against the baseline" in str(r.get("message"))]
    effect = "failed" if run.gate.inconclusive == "fail" else "passed, --gate-inconclusive=pass"
    text = (f"speed gate against {source}: {len(compared) - len(metric)} item(s) compared: "
            + ", ".join(f"{len(counts[n])} {n}" for n in VERDICTS)
            + f" (--max-regression {run.max_regression:g}%)")
    if counts[INCONCLUSIVE]:
        text += f"; inconclusive ({effect}): {', '.join(counts[INCONCLUSIVE])}"
    if metric:
        text += f"; {len(metric)} metric(s) compared, {len(dropped)} dropped"
    failed = counts[REGRESSED] or dropped or (counts[INCONCLUSIVE]
                                              and run.gate.inconclusive == "fail")
    return text, {"red": bool(failed), "yellow": bool(counts[INCONCLUSIVE]) and not failed}


def _benchmark_regressions(config: pytest.Config) -> list[tuple[str, str]]:
    """pytest-benchmark's --benchmark-compare-fail failures, taken from it: it
    finds them at session finish, before this plugin's hook, and would raise
    them from its terminal summary as a bare traceback after the session's exit
    status was written (0). Taken here, they fail the run and are printed."""
    bench = getattr(config, "_benchmarksession", None)
    found = list(getattr(bench, "performance_regressions", None) or [])
    if found:
        bench.performance_regressions = []
    return [(str(name), str(why)) for name, why in found]
