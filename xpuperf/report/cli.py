"""The `xpuperf` command: `xpuperf compare reports/CPU reports/TVM -o compare.html`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from xpuperf.report import render_compare
from xpuperf.report.compare import CompareError, compare
from xpuperf.report.published import PUBLISHED, PublishedError, load_published
from xpuperf.report.runs import load_run

# The templates live in the checkout beside the package (as for the pytest
# plugin), which an editable install (.ci/setup) keeps in place.
TEMPLATES = Path(__file__).resolve().parents[2] / "report_templates"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xpuperf", description="xpuperf's reports")
    commands = parser.add_subparsers(dest="command", required=True)
    cmp = commands.add_parser(
        "compare", help="several hardware's reports folders side by side, in one HTML page",
        description="Join reports folders (reports/<HARDWARE>, one session each) by "
                    "combination and write one self-contained HTML page.")
    cmp.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                     help="a reports folder, e.g. reports/CPU")
    cmp.add_argument("-o", "--output", type=Path, default=Path("compare.html"),
                     help="the page to write (default: compare.html)")
    cmp.add_argument("--baseline", metavar="HARDWARE",
                     help="the hardware the ratios are to (default: the first folder's)")
    cmp.add_argument("--allow-mixed", action="store_true",
                     help="compare runs of different tiers or zoo versions (the page says so)")
    cmp.add_argument("--published", type=Path, default=PUBLISHED, metavar="YAML",
                     help="the vendors' published figures (default: xpuperf's published.yaml)")
    args = parser.parse_args(argv)
    if not (TEMPLATES / "compare.html.j2").is_file():
        parser.exit(2, f"xpuperf: no report templates at {TEMPLATES}; install xpuperf from its "
                       "checkout with `pip install -e .`\n")
    try:
        runs = [load_run(folder) for folder in args.folders]
        comparison = compare(runs, args.baseline, load_published(args.published),
                             allow_mixed=args.allow_mixed)
    except (CompareError, PublishedError) as e:
        parser.exit(2, f"xpuperf compare: {e}\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_compare(comparison, TEMPLATES), encoding="utf-8")
    print(f"xpuperf compare: {len(comparison.lines)} combinations of "
          f"{', '.join(comparison.hardware)} (baseline {comparison.baseline}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
