"""The models the installed onnx wheel ships with their data
(onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple,light}), each
declared in a zoo of its own by its file and golden data alone, as a user
brings a model, and judged on each backend by compile and by fp32 numerics
against the shipped outputs. Prints per folder and backend how many pass, and
why the others do not (the zoo's refusal, the reference's or the backend's
failure), grouped by reason.

    python benchmarks/onnx_wheel_zoo.py --hardware CPU OPENVINO TVM
    python benchmarks/onnx_wheel_zoo.py --hardware CPU --folders simple light --out /tmp/wheel
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

FOLDERS = ("pytorch-converted", "pytorch-operator", "simple", "light")
ITEMS = "fp32 and (numerics or compile)"


def declarations(data: Path, folder: str) -> dict[str, dict[str, str]]:
    """Zoo entries (name -> {model, golden}) for every model of ``folder``."""
    base = data / folder
    if folder == "light":  # <model>.onnx beside <model>_output_0.pb, no inputs
        return {f"{folder}-{f.stem}": {"model": str(f), "golden": str(f.with_name(f"{f.stem}_output_0.pb"))}
                for f in sorted(base.glob("*.onnx"))}
    return {f"{folder}-{d.name}": {"model": str(d / "model.onnx"), "golden": str(d)}
            for d in sorted(base.iterdir()) if (d / "model.onnx").is_file()}


def accepted(models: dict[str, dict[str, str]], zoo: Path) -> tuple[dict, dict[str, str]]:
    """The entries the zoo loads, and why it refuses the others (one zoo each, so
    that one refusal does not take the rest down)."""
    from xpuperf.zoo import ZooError, load_zoo

    ok, refused = {}, {}
    for name, entry in models.items():
        zoo.write_text(yaml.safe_dump({"models": {name: entry}}))
        try:
            load_zoo(zoo, "smoke")
            ok[name] = entry
        except ZooError as e:
            refused[name] = str(e).split(": ", 2)[-1]
    return ok, refused


def run(hardware: str, zoo: Path, out: Path) -> dict[str, tuple[str, str]]:
    """Each model's (verdict, reason) on ``hardware``, from its result JSON."""
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                    "suites/accuracy/test_accuracy.py", "suites/compiler_coverage/test_compile.py",
                    "--zoo", str(zoo), "--zoo-tier", "smoke", "--hardware", hardware, "-k", ITEMS,
                    "--report-dir", str(out / hardware), "--cache-dir", str(out / "cache")],
                   cwd=ROOT, capture_output=True, text=True)
    verdicts = {}
    for result in (out / hardware).glob("*/result-fp32.json"):
        doc = json.loads(result.read_text())
        suites = doc["Suites"]
        passed = suites.get("compile") == "passed" and suites.get("numerics") == "passed"
        reason = "" if passed else next((m for m in doc["Messages"] if m), doc["Status"])
        verdicts[doc["Zoo Model"]] = ("passed" if passed else doc["Status"], reason)
    return verdicts


def main() -> int:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hardware", nargs="+", default=["CPU"])
    ap.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=FOLDERS)
    ap.add_argument("--out", type=Path, default=None, help="reports and caches (default: a temporary folder)")
    args = ap.parse_args()

    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    out = args.out or Path(tempfile.mkdtemp(prefix="onnx-wheel-"))
    out.mkdir(parents=True, exist_ok=True)
    models = {k: v for f in args.folders for k, v in declarations(data, f).items()}
    ok, refused = accepted(models, out / "probe.yaml")
    zoo = out / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"models": ok}))
    print(f"onnx {onnx.__version__}: {len(models)} models in {', '.join(args.folders)}; "
          f"the zoo takes {len(ok)}, refuses {len(refused)}; reports in {out}")
    verdicts = {hw: run(hw, zoo, out) for hw in args.hardware}

    for folder in args.folders:
        names = [n for n in models if n.startswith(f"{folder}-")]
        judged = [n for n in names if n in ok]
        cells = []
        for hw in args.hardware:
            passed = sum(verdicts[hw].get(n, ("",))[0] == "passed" for n in judged)
            cells.append(f"{hw} {passed}/{len(judged)}")
        print(f"{folder}: {len(names)} models, {len(names) - len(judged)} refused by the zoo; "
              f"compile and numerics passed: {', '.join(cells)}")
    on_all = [n for n in ok if all(verdicts[hw].get(n, ("",))[0] == "passed" for hw in args.hardware)]
    print(f"passed on every backend: {len(on_all)}/{len(ok)}")

    reasons = collections.Counter(reason for reason in refused.values())
    for reason, count in reasons.most_common():
        print(f"  refused x{count}: {reason[:160]}")
    for hw in args.hardware:
        failed = collections.defaultdict(list)
        for name in ok:
            verdict, reason = verdicts[hw].get(name, ("not run", "no result: the session ended first"))
            if verdict != "passed":
                failed[reason.splitlines()[0][:160]].append(name)
        for reason, names in sorted(failed.items(), key=lambda kv: -len(kv[1])):
            print(f"  {hw} x{len(names)}: {reason} ({', '.join(names[:6])}"
                  f"{', ...' if len(names) > 6 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
