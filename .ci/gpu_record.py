"""Writes OUT_DIR/gpu-record.md from what .ci/gpu-check left in OUT_DIR, in the
layout of docs/gpu-record.md (which a GPU session replaces with it): when and on
what it ran, each step's outcome and seconds, each pytest step's counts, the
targets' figures, and the commands.

    python .ci/gpu_record.py OUT_DIR

Reads OUT_DIR/info.json (the info step), OUT_DIR/steps.tsv (one line a step
run: name, exit status, seconds, limit, command), OUT_DIR/steps.known (every
step's name), OUT_DIR/<step>.xml (pytest's JUnit XML, written also when a time
limit stopped it) and OUT_DIR/targets.log.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MAX_FIGURE_LINES = 80  # of the targets' log, bounded


def counts(xml: Path) -> dict[str, int] | None:
    """passed, failed, errors, skipped (xfailed among them) of one pytest run."""
    if not xml.is_file():
        return None
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in
                                      ("tests", "failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped}


def outcome(rc: int, seconds: int, limit: int) -> str:
    if rc == 0:
        return "ok"
    if rc in (124, 130, 137) and seconds >= limit:
        return f"stopped at its {limit} s limit"
    return f"failed (exit {rc})"


def render(out: Path) -> str:
    info_path = out / "info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    lines = ["# What ran on a GPU: the last record", "",
             f"Written by `.ci/gpu-check` ({'dry run on the CPU: no GPU figure' if info.get('dry_run') else 'on the card below'}).",
             "", "| | |", "|---|---|"]
    for key in ("date", "card", "capability", "driver", "torch", "cuda", "transformers",
                "commit"):
        lines.append(f"| {key} | {info.get(key, 'unknown')} |")
    lines += ["", "## Steps", "",
              "| step | outcome | seconds | passed | failed | errors | skipped |",
              "|---|---|---|---|---|---|---|"]
    steps, outcomes = [], []
    table = out / "steps.tsv"
    for row in (table.read_text().splitlines() if table.is_file() else []):
        name, rc, seconds, limit, command = row.split("\t", 4)
        steps.append((name, command))
        outcomes.append((name, int(rc)))
        c = counts(out / f"{name}.xml")
        figures = [str(c[k]) for k in ("passed", "failed", "errors", "skipped")] if c \
            else ["-"] * 4
        lines.append(f"| {name} | {outcome(int(rc), int(seconds), int(limit))} | {seconds} | "
                     + " | ".join(figures) + " |")
    targets = out / "targets.log"
    if targets.is_file():
        said = [line for line in targets.read_text(errors="replace").splitlines()
                if line.startswith("[") or line.startswith("---")]
        lines += ["", "## Targets (benchmarks/gpu_targets.py)", "", "```",
                  *said[:MAX_FIGURE_LINES], "```"]
    known_path = out / "steps.known"
    known = known_path.read_text().split() if known_path.is_file() else []
    ran_ok = {name for name, rc in outcomes if rc == 0}
    missing = [name for name in known if name not in ran_ok]
    lines += ["", "## Never run on a GPU in this record", ""]
    lines += [f"- `{name}`: {'not selected' if name not in dict(outcomes) else 'did not pass'}"
              for name in missing] or ["- (every step of .ci/gpu-check passed)"]
    if info.get("dry_run"):
        lines.append("- anything: this was a dry run on the CPU")
    lines += ["", "## Commands", ""]
    lines += [f"- `{name}`: `{command}`" for name, command in steps]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python .ci/gpu_record.py OUT_DIR (the folder .ci/gpu-check wrote)",
              file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    (out / "gpu-record.md").write_text(render(out))
    print(f"gpu-record: {out / 'gpu-record.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
