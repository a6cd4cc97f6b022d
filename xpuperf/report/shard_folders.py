"""`xpuperf merge`'s I/O: shards' report folders read (session.json,
records.json, benchmark.json) and the merged session written into one folder
as a session writes its own (xpuperf.report.write_reports): report.html, the
ByteMLPerf result files, ops.json, records.json, benchmark.json and
session.json, last. The checks and the joining are xpuperf.report.merge's."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from xpuperf import report_folder
from xpuperf.report import TEMPLATES, write_reports
from xpuperf.report.merge import MergeError, ShardRun
from xpuperf.report import merge

# A folder's JSON files are read whole: bounded, so that a wrong path (a
# dataset, a log) is refused rather than read into memory.
MAX_BYTES = 512 * 2**20


def _json(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise MergeError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a {what}")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MergeError(f"{path}: cannot read it ({e.strerror or e}); give the --report-dir of "
                         "a shard's session") from None
    except ValueError as e:
        raise MergeError(f"{path}: not a {what}: {e}") from None


def read_shard(folder: Path) -> ShardRun:
    """The shard whose session wrote ``folder``; MergeError naming what is wrong."""
    if not folder.is_dir():
        raise MergeError(f"{folder}: no such folder; give each shard's --report-dir")
    manifest = _json(folder / report_folder.MANIFEST, "session manifest")
    doc = _json(folder / report_folder.RECORDS, f"xpuperf {report_folder.RECORDS}")
    if not isinstance(manifest, dict) or not isinstance(doc, dict) \
            or not isinstance(doc.get("records"), list):
        raise MergeError(f"{folder}: its {report_folder.MANIFEST} or {report_folder.RECORDS} is "
                         "not xpuperf's; rerun the shard with this xpuperf")
    bench_path = folder / "benchmark.json"
    bench = _json(bench_path, "pytest-benchmark JSON") if bench_path.is_file() else None
    return ShardRun(str(folder), manifest, [r for r in doc["records"] if isinstance(r, dict)],
                    doc.get("info") if isinstance(doc.get("info"), dict) else {},
                    bench if isinstance(bench, dict) else None)


def write_merged(runs: Sequence[ShardRun], out: Path, allow_mixed: bool = False) -> list[Path]:
    """Check ``runs`` and write their merged session into ``out`` (locked and
    cleared as a session's report folder is); the paths written, report.html
    first. MergeError when they do not merge."""
    mixed = merge.check(runs, allow_mixed)
    records = merge.records(runs)
    info = merge.info(runs, records, mixed)
    hardware = str(runs[0].manifest.get("hardware") or runs[0].info.get("name") or "unknown")
    try:
        report_folder.check(out)
        with report_folder.lock(out, f"xpuperf merge into {out}"):
            report_folder.clear(out, True, time.strftime("%Y-%m-%d %H:%M:%S %z"))
            written = write_reports(records, out, hardware, info, TEMPLATES)
            report_folder.write_text(out / report_folder.RECORDS, json.dumps(
                {"hardware": hardware, "info": info, "records": records}, indent=1,
                default=str) + "\n")
            written.append(out / report_folder.RECORDS)
            bench = merge.benchmark(runs)
            if bench is not None:
                report_folder.write_text(out / "benchmark.json", json.dumps(bench, indent=4))
                written.append(out / "benchmark.json")
            report_folder.write(out, merge.manifest(runs, records, mixed))
    except (report_folder.ReportFolderError, OSError) as e:
        raise MergeError(f"{out}: {e}") from None
    return written
