"""The report folder holds one session's results and nothing older.

An earlier session's files (report.html, the result JSONs, ops.json,
benchmark.json, the manifest) stay until this session has a result to write: a
run that selects nothing, or dies before any item reports, leaves the last
report in place. Then the session locks the folder (LOCK, held until it
ends: a second session finding it locked stops after that item, naming the
first, and writes nothing there), the files are removed, and the manifest,
session.json, says the run has not finished; at the end it says how the run
ended, what it selected and whether the reports were written. A folder whose
run died therefore claims nothing, and --baseline takes only a finished run
(xpuperf.gate). Every file is written whole or not at all (write_text): a full
disk leaves the earlier file, never half of one.
"""
from __future__ import annotations

import fcntl
import json
import tempfile
from pathlib import Path
from typing import IO, Any

from backends.base import write_atomically

MANIFEST = "session.json"
# The micro-benchmarks' cases (xpuperf.report.microperf.document), read back
# by the speed gate and `xpuperf compare`.
MICRO_JSON = "micro_perf.json"
LOCK = "session.lock"
# Every item's record, its id and seconds included: what `xpuperf merge` joins
# and --shard-durations balances by.
RECORDS = "records.json"
_TOP_FILES = ("report.html", "ops.json", RECORDS, MANIFEST)


class ReportFolderError(ValueError):
    pass


def check(folder: Path) -> None:
    """ReportFolderError unless ``folder`` is, or can be made, a folder."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise ReportFolderError(f"{folder}: {path} is a file, not a folder; pass a "
                                        "folder (it is made if absent)")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportFolderError(f"{folder}: cannot make it: {e.strerror or e}") from None
    try:  # what the session will do there: a read-only folder is a usage error now
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ReportFolderError(f"{folder}: cannot write in it: {e.strerror or e}; pass a "
                                "folder you can write") from None


def lock(folder: Path, session: str) -> IO:
    """Lock ``folder`` for this process, noting ``session`` (what the other
    session's error names) in its lock file; ReportFolderError when another
    session holds it. The lock lasts as long as the returned file is open."""
    handle = open(folder / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - kept open: the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        other = handle.read().strip() or "another session"
        handle.close()
        raise ReportFolderError(f"{folder}: {other} is writing its reports there; wait for it "
                                "to end or pass another --report-dir") from None
    handle.truncate(0)
    handle.write(session)
    handle.flush()
    return handle


def clear(folder: Path, benchmark_json: bool, started: str) -> None:
    """Remove what an earlier session wrote in ``folder`` (benchmark.json too when
    this session writes it there) and mark the run begun at ``started``."""
    names = _TOP_FILES + (("benchmark.json",) if benchmark_json else ())
    for name in names:
        (folder / name).unlink(missing_ok=True)
    for result in folder.glob("*/result-*.json"):
        result.unlink()
        if not any(result.parent.iterdir()):
            result.parent.rmdir()
    write(folder, {"finished": False, "started": started})


def write(folder: Path, manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole, or keeps what it held (the cache's
    write_atomically: a temporary file beside it, renamed over it; no fsync, so a
    guard against a full disk and a killed process, not a power cut). OSError
    when it cannot be written."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read(folder: Path) -> dict[str, Any]:
    """The folder's manifest; {} when there is none or it cannot be read."""
    try:
        value = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
