"""Per-op conformance of backends on onnx's node test cases (xpuperf.opconformance).

For each --hardware: runs every case (or those of --ops) in a worker process,
prints the pass rate, the outcome counts, the wall time of the whole run and,
with --per-op, a table of outcomes per op; then compares the failures with the
backend's expected_op_failures.txt (exit code 1 on drift), or with
--write-expected rewrites that file from this run.

    python benchmarks/op_conformance.py --hardware CPU --hardware TVM --hardware OPENVINO
    python benchmarks/op_conformance.py --hardware TVM --ops Add,Conv --per-op
    python benchmarks/op_conformance.py --hardware OPENVINO --write-expected
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

# Run as a script from anywhere: the package is the repository's, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.registry import find  # noqa: E402
from xpuperf.opconformance import (  # noqa: E402
    OUTCOMES, OpResult, check_expected, collect_cases, format_expected, load_expected,
    run_isolated, summarize)

EXPECTED_FILE = "expected_op_failures.txt"


def expected_path(hardware: str) -> Path:
    """The expected-failures file beside the backend's package."""
    spec = importlib.util.find_spec(find(hardware).target.split(":", 1)[0])
    if spec is None or spec.origin is None:
        raise SystemExit(f"cannot locate the package of backend {hardware}")
    return Path(spec.origin).parent / EXPECTED_FILE


def per_op_table(results: list[OpResult]) -> str:
    rows = [f"{'op':<34}{'cases':>6}" + "".join(f"{o:>12}" for o in OUTCOMES)]
    for op, counts in summarize(results).items():
        rows.append(f"{op:<34}{sum(counts.values()):>6}"
                    + "".join(f"{counts.get(o, 0):>12}" for o in OUTCOMES))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hardware", action="append", required=True,
                        help="backend name as for --hardware (repeatable)")
    parser.add_argument("--ops", help="comma-separated op types (default: all)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--per-op", action="store_true", help="print the per-op table")
    parser.add_argument("--write-expected", action="store_true",
                        help=f"rewrite each backend's {EXPECTED_FILE} from this run")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    args = parser.parse_args()
    if args.write_expected and args.ops:
        parser.error("--write-expected rewrites the whole file: run it on all ops")

    options = dict(o.split("=", 1) for o in args.backend_option)
    ops = set(args.ops.split(",")) if args.ops else None
    cases = collect_cases(ops)
    if not cases:
        raise SystemExit(f"no op test case matches --ops {args.ops}")
    drift = 0
    dump: dict[str, list[dict[str, object]]] = {}
    for hardware in args.hardware:
        entry = find(hardware)
        missing = entry.missing()
        if missing:
            print(f"{entry.name}: unavailable: {missing}")
            continue
        start = time.perf_counter()
        results = []
        progress = sys.stderr.isatty()
        for r in run_isolated(entry.name, cases, args.precision, options, args.timeout):
            results.append(r)
            if progress:
                print(f"\r{entry.name}: {len(results)}/{len(cases)} {r.case_id:<70}",
                      end="", file=sys.stderr, flush=True)
        wall = time.perf_counter() - start
        if progress:
            print(file=sys.stderr)
        passed = sum(r.passed for r in results)
        counts = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
        print(f"{entry.name}: {passed}/{len(results)} cases pass "
              f"({100.0 * passed / len(results):.1f}%) in {wall:.0f} s; "
              + ", ".join(f"{o} {n}" for o, n in counts.items()))
        if args.per_op:
            print(per_op_table(results))
        dump[entry.name] = [vars(r) for r in results]

        path = expected_path(entry.name)
        if args.write_expected:
            scope = f"ops {args.ops}" if args.ops else "all ops"
            path.write_text(format_expected(results, (
                f"Op-conformance cases {entry.name} is known to fail ({args.precision}, {scope}).\n"
                "One onnx node test case id a line; '#' starts a comment.\n"
                f"Regenerate: python benchmarks/op_conformance.py --hardware {entry.name} "
                "--write-expected")))
            print(f"{entry.name}: wrote {path}")
        elif path.exists():
            problems = check_expected(results, load_expected(path), path)
            drift += len(problems)
            for p in problems:
                print(f"{entry.name}: {p}")
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
