"""The `xpuperf` command: `xpuperf compare reports/CPU reports/TVM -o compare.html`,
or one hardware before and after: `xpuperf compare before/CPU after/CPU --label
before --label after`; `xpuperf merge shard-1 shard-2 -o reports/CPU` joins the
report folders of one run's shards (--shard K/N) into one session."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from xpuperf.report import TEMPLATES, render_compare
from xpuperf.gate.verdict import DEFAULT_THRESHOLD_PCT, VERDICTS
from xpuperf.report.compare import CompareError, compare
from xpuperf.report.published import PUBLISHED, PublishedError, load_published
from xpuperf.report.runs import load_run
from xpuperf.report.terminal import sweep_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xpuperf", description="xpuperf's reports")
    commands = parser.add_subparsers(dest="command", required=True)
    cmp = commands.add_parser(
        "compare", help="several runs' reports folders side by side, in one HTML page",
        description="Join reports folders (reports/<HARDWARE>, one session each: other "
                    "hardware, or one hardware before and after a change) by combination "
                    "and write one self-contained HTML page. Ratios are per scenario and "
                    "batch size, p99 at the baseline's offered load; a ratio within the "
                    "noise of the figures compared is shown as no change.")
    cmp.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                     help="a reports folder, e.g. reports/CPU")
    cmp.add_argument("-o", "--output", type=Path, default=Path("compare.html"),
                     help="the page to write (default: compare.html)")
    cmp.add_argument("--label", action="append", default=[], metavar="NAME",
                     help="a name for each folder, in order, one --label per folder "
                          "(default: the folder's name, with its parent where two agree)")
    cmp.add_argument("--baseline", metavar="LABEL",
                     help="the run the ratios are to: its label, or a hardware only one run "
                          "has (default: the first folder's)")
    cmp.add_argument("--allow-mixed", action="store_true",
                     help="compare runs of different tiers or zoo versions (the page says so)")
    cmp.add_argument("--max-regression", type=float, default=DEFAULT_THRESHOLD_PCT, metavar="PCT",
                     help="the slowdown a micro-benchmark case may show before it is judged "
                          f"regressed (default: {DEFAULT_THRESHOLD_PCT:g}, the speed gate's)")
    cmp.add_argument("--published", type=Path, default=PUBLISHED, metavar="YAML",
                     help="the vendors' published figures (default: xpuperf's published.yaml)")
    mrg = commands.add_parser(
        "merge", help="the report folders of one run's shards (--shard K/N) as one session",
        description="Join the report folders of one run's shards (pytest --shard K/N, each "
                    "its own --report-dir) into one session's folder: session.json, the "
                    "result JSON files, ops.json, records.json, benchmark.json and "
                    "report.html. Refuses shards of different commits, tiers, hardware or "
                    "zoos, and a shard missing or given twice.")
    mrg.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                     help="a shard's report folder")
    mrg.add_argument("-o", "--output", type=Path, required=True, metavar="FOLDER",
                     help="the merged session's report folder (an earlier report there is "
                          "replaced)")
    mrg.add_argument("--allow-mixed", action="store_true",
                     help="merge shards of different commits, tiers, hardware or zoos (the "
                          "merged session says so)")
    args = parser.parse_args(argv)
    if args.command == "merge":
        return _merge(parser, args)
    if args.label and len(args.label) != len(args.folders):
        parser.exit(2, f"xpuperf compare: {len(args.label)} --label for {len(args.folders)} "
                       "folders: give one --label per folder, in the folders' order\n")
    try:
        runs = [load_run(folder, label) for folder, label in
                zip(args.folders, args.label or [""] * len(args.folders))]
        comparison = compare(runs, args.baseline, load_published(args.published),
                             allow_mixed=args.allow_mixed, threshold_pct=args.max_regression)
    except (CompareError, PublishedError) as e:
        parser.exit(2, f"xpuperf compare: {e}\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_compare(comparison, TEMPLATES), encoding="utf-8")
    micro = [c.verdict.verdict for line in comparison.micro for c in line.cells if c.verdict]
    judged = (f" and {len(comparison.micro)} micro-benchmark case(s) ("
              + ", ".join(f"{micro.count(n)} {n}" for n in VERDICTS) + ")"
              if comparison.micro else "")
    print(f"xpuperf compare: {len(comparison.lines)} combinations{judged} of "
          f"{', '.join(comparison.labels)} (baseline {comparison.baseline}) -> {args.output}")
    points = sweep_table([(c.label, c.row) for line in comparison.lines for c in line.cells
                          if c.row is not None])
    if points:  # the page overlays their frontiers; the figures of every point here
        print(f"\nLLM sweep points:\n{points}")
    return 0


def _merge(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from xpuperf.report.merge import MergeError
    from xpuperf.report.shard_folders import read_shard, write_merged
    try:
        runs = [read_shard(folder) for folder in args.folders]
        written = write_merged(runs, args.output, args.allow_mixed)
    except MergeError as e:
        parser.exit(2, f"xpuperf merge: {e}\n")
    items = sum(len(r.records) for r in runs)
    print(f"xpuperf merge: {len(runs)} shards, {items} items -> {args.output} "
          f"({written[0].name} and {len(written) - 1} other file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
