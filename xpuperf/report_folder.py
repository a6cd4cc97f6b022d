"""The report folder holds one session's results and nothing older.

At the start of a session the files an earlier session wrote there (report.html,
the result JSONs, ops.json, benchmark.json, the manifest) are removed, and the
manifest, session.json, says the run has not finished; at the end it says how
the run ended and what it selected. A folder whose run died therefore claims
nothing, and --baseline takes only a finished run (xpuperf.gate).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MANIFEST = "session.json"
_TOP_FILES = ("report.html", "ops.json", MANIFEST)


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


def clear(folder: Path, benchmark_json: bool) -> None:
    """Remove what an earlier session wrote in ``folder`` (benchmark.json too when
    this session writes it there) and mark the run begun."""
    names = _TOP_FILES + (("benchmark.json",) if benchmark_json else ())
    for name in names:
        (folder / name).unlink(missing_ok=True)
    for result in folder.glob("*/result-*.json"):
        result.unlink()
        if not any(result.parent.iterdir()):
            result.parent.rmdir()
    write(folder, {"finished": False, "started": time.strftime("%Y-%m-%d %H:%M:%S %z")})


def write(folder: Path, manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def read(folder: Path) -> dict[str, Any]:
    """The folder's manifest; {} when there is none or it cannot be read."""
    try:
        value = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
