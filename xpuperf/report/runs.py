"""Reading a reports folder back: its result-*.json files -> a Run (I/O only).

A folder is one session of one hardware: reports/<HARDWARE>/<model>/result-<precision>.json,
as write_reports leaves them. These files, not report.html, are the interface:
a vendor who ran xpuperf elsewhere sends the folder, and it compares.
"""
from __future__ import annotations

import json
from pathlib import Path

from xpuperf.report.bytemlperf import ResultError, row_from_result
from xpuperf.report.compare import CompareError, Run
from xpuperf.report.summary import row_key
from xpuperf.report_folder import MICRO_JSON


def load_run(folder: str | Path, label: str = "") -> Run:
    """The session whose reports are in ``folder``, named ``label`` (default: the
    folder's name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CompareError(f"{folder}: no such reports folder (give reports/<HARDWARE>)")
    files = sorted(folder.glob("*/result-*.json"))
    micro = _micro(folder / MICRO_JSON)
    if not files and micro is None:
        raise CompareError(f"{folder}: holds no <model>/result-<precision>.json nor "
                           f"{MICRO_JSON}; give a folder an xpuperf session wrote (--report-dir)")
    rows, hardware, info = [], set(), {}
    if micro is not None:
        hardware.add(str(micro.get("hardware", "")))
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            rows.append(row_from_result(doc))
        except (OSError, ValueError, ResultError) as e:
            raise CompareError(f"{path}: {e}") from None
        hardware.add(str(doc.get("Backend", "")))
        info = info or dict(doc.get("Host Info") or {})
    if len(hardware) != 1:
        raise CompareError(f"{folder}: results of several hardware "
                           f"({', '.join(sorted(hardware))}); a reports folder holds one session")
    cases = {str(e["case"]): {**e, "op": op} for op, entries in (micro or {}).get("ops", {}).items()
             for e in entries if isinstance(e, dict) and e.get("case")}
    return Run(hardware=hardware.pop(), source=str(folder), info=info,
               rows=sorted(rows, key=row_key), label=label, micro=cases)


def _micro(path: Path) -> dict | None:
    """micro_perf.json's document, or None where the session ran no micro item."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CompareError(f"{path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ops"), dict):
        raise CompareError(f"{path}: not a micro_perf.json (no 'ops' object)")
    return doc
