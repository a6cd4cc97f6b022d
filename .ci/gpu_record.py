"""The GPU record: OUT_DIR/gpu-record.md from what .ci/gpu-check left in
OUT_DIR, in the layout of docs/gpu-record.md (which a GPU session replaces with
it): when and on what it ran, each step's outcome and seconds, each pytest
step's counts and where its time went, the targets' figures, what did not run,
and the commands.

    python .ci/gpu_record.py info OUT_DIR [--dry-run]   # gpu-check's info step
    python .ci/gpu_record.py record OUT_DIR             # the record

Reads OUT_DIR/info.json (the info step), OUT_DIR/steps.tsv (one line a step
run: name, exit status, seconds, limit, start (epoch s), command), OUT_DIR/steps.known (every
step's name), OUT_DIR/<step>.xml (pytest's JUnit XML, written also when a time
limit stopped it) and the targets' logs (OUT_DIR/targets.log, llm-targets.log,
targets-full.log).
"""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MAX_FIGURE_LINES = 80  # of a targets' log, bounded
TARGET_STEPS = ("targets", "llm-targets", "targets-full")  # benchmarks/gpu_targets.py's steps
SLOWEST = 8  # items named per pytest step: where a step that did not fit its window lost it


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


def timing(xml: Path) -> tuple[dict[str, float], list[tuple[float, str]]] | None:
    """Seconds in a pytest run's items (setup, call and teardown) by test module,
    and its slowest items (seconds, id): a group's first item carries its
    worker's start and its model's build."""
    if not xml.is_file():
        return None
    by_module: dict[str, float] = {}
    items = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        seconds = float(case.get("time") or 0)
        module = (case.get("classname") or "?").rpartition(".")[2]
        by_module[module] = by_module.get(module, 0.0) + seconds
        items.append((seconds, case.get("name") or "?"))
    return (by_module, sorted(items, reverse=True)[:SLOWEST]) if items else None


def where_time_went(name: str, seconds: int, xml: Path) -> str | None:
    """One line: a pytest step's seconds in its items, by module, against its
    wall time (the rest: start, collection, reports), and its slowest items."""
    timed = timing(xml)
    if timed is None:
        return None
    by_module, slowest = timed
    total = sum(by_module.values())
    modules = ", ".join(f"{m} {s:.1f} s" for m, s in sorted(by_module.items(), key=lambda m: -m[1]))
    # pytest-xdist's workers ran items at once: their seconds add up past the wall's.
    outside = (f"{seconds - total:.1f} s outside them (start, collection, reports)"
               if total <= seconds else "summed over the pytest workers that ran them at once")
    return (f"- `{name}` ({seconds} s): {total:.1f} s in its items ({modules}), {outside}; "
            "slowest: " + ", ".join(f"`{item}` {s:.2f} s" for s, item in slowest))


def side_by_side(ran: list[tuple[str, int, int]]) -> list[str]:
    """The steps (name, start, seconds) whose runs overlapped another's: they
    shared the card and the host, so their seconds are not a step's alone."""
    return [name for name, start, seconds in ran
            if any(other != name and start < s + t and s < start + seconds
                   for other, s, t in ran)]


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
    for key in ("date", "card", "capability", "driver", "compute mode", "torch", "cuda",
                "transformers", "commit"):
        lines.append(f"| {key} | {info.get(key, 'unknown')} |")
    lines += ["", "## Steps", "",
              "| step | outcome | seconds | passed | failed | errors | skipped |",
              "|---|---|---|---|---|---|---|"]
    known_path = out / "steps.known"
    known = known_path.read_text().split() if known_path.is_file() else []
    table = out / "steps.tsv"
    # In the script's order: steps run side by side end in any order.
    rows = sorted((row.split("\t", 5) for row in
                   (table.read_text().splitlines() if table.is_file() else [])),
                  key=lambda row: known.index(row[0]) if row[0] in known else len(known))
    steps, outcomes, spent = [], [], []
    for name, rc, seconds, limit, _, command in rows:
        steps.append((name, command))
        outcomes.append((name, int(rc)))
        c = counts(out / f"{name}.xml")
        figures = [str(c[k]) for k in ("passed", "failed", "errors", "skipped")] if c \
            else ["-"] * 4
        lines.append(f"| {name} | {outcome(int(rc), int(seconds), int(limit))} | {seconds} | "
                     + " | ".join(figures) + " |")
        spent.append(where_time_went(name, int(seconds), out / f"{name}.xml"))
    together = side_by_side([(row[0], int(row[4]), int(row[2])) for row in rows])
    if together:
        lines += ["", "Side by side on the card (their seconds overlap; no figure of theirs "
                  "is a step's alone): " + ", ".join(f"`{name}`" for name in together) + "."]
    if any(spent):
        lines += ["", "## Where each pytest step's time went", "", *filter(None, spent)]
    for name in TARGET_STEPS:
        log = out / f"{name}.log"
        if log.is_file():
            said = [line for line in log.read_text(errors="replace").splitlines()
                    if line.startswith("[") or line.startswith("---")]
            lines += ["", f"## Targets (`{name}`: benchmarks/gpu_targets.py)", "", "```",
                      *said[:MAX_FIGURE_LINES], "```"]
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


def info(dry_run: bool) -> dict[str, Any]:
    """When, on what card, driver and stack this run is; the card's fields say
    so where there is no CUDA device (a dry run)."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()

    def run(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown ({e})"
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"

    def query(field: str) -> str:
        return run("nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader") if cuda else "-"

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "card": torch.cuda.get_device_name() if cuda else "none (CPU only)",
            "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else "-",
            "driver": query("driver_version"),
            # The window's steps share the card: an exclusive mode would refuse all but one.
            "compute mode": query("compute_mode"),
            "torch": torch.__version__, "cuda": torch.version.cuda or "-",
            "transformers": transformers.__version__,
            "commit": run("git", "rev-parse", "--short", "HEAD"), "dry_run": dry_run}


USAGE = ("usage: python .ci/gpu_record.py info OUT_DIR [--dry-run]   (the info step)\n"
         "       python .ci/gpu_record.py record OUT_DIR              (OUT_DIR/gpu-record.md)")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("info", "record") or not Path(argv[1]).is_dir():
        print(USAGE, file=sys.stderr)
        return 2
    out = Path(argv[1])
    if argv[0] == "info":
        found = info("--dry-run" in argv[2:])
        (out / "info.json").write_text(json.dumps(found, indent=1))
        print(json.dumps(found))
        # Without a CUDA device a real run measures nothing: say so by failing.
        return 0 if found["dry_run"] or found["card"] != "none (CPU only)" else 1
    (out / "gpu-record.md").write_text(render(out))
    print(f"gpu-record: {out / 'gpu-record.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
