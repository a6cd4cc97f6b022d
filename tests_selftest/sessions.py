"""A tiny zoo and whole pytest sessions over it: the selftests that prove a fault
is caught end to end (the faulty backends are in fakes.py) share them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The default --cache-dir, where README's command keeps onnx's op cases
# (xpuperf.conformance.opconformance.case_store): a selftest that runs op cases
# reads them there instead of building them again (about 20 s).
SHARED_CACHE = ROOT / ".xpuperf_cache"


def python_env(*folders: Path) -> dict[str, str]:
    """This process's environment with the repository and ``folders`` first on the
    import path: for a script or session a test runs in a python of its own.
    Without pytest-xdist's variables, where this is one of its workers: they
    would make pytest-benchmark in a session of its own think itself a worker
    too, and write no JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return {**env, "PYTHONPATH": os.pathsep.join(map(str, (ROOT, *folders)))}

_TINY_ZOO = """\
defaults:
  tolerances: {{fp32: {{max_abs: 1.0e-3, min_cosine: 0.9999}}}}
{tiers}datasets:
  fake: {{id: fake, format: fake}}
models:
  tiny-bert:
    family: bert
    framework: torch
    domain: nlp
    builder: bert_qa
    config: {{vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, max_position_embeddings: 16}}
    dataset: fake
    dataset_options: {{samples: {samples}}}
    inputs:
      - {{name: input_ids, shape: [batch, 8], dtype: int64, range: [0, 50]}}
      - {{name: attention_mask, shape: [batch, 8], dtype: int64, range: [1, 2]}}
      - {{name: token_type_ids, shape: [batch, 8], dtype: int64, range: [0, 2]}}
    outputs: [start_logits, end_logits]
    batch_sizes: [2]
    precisions: [fp32]
"""


def tiny_zoo(folder: Path, tiers: str = "", samples: int = 6) -> Path:
    """Write a one-model zoo (tiny-bert on fake data, fp32, batch size 2) into
    ``folder``; ``tiers`` is a `tiers:` section of YAML, when a test needs one."""
    (folder / "zoo.yaml").write_text(_TINY_ZOO.format(tiers=tiers, samples=samples))
    return folder


_CONV_MODEL = """\
  {name}:
    family: conv
    framework: torch
    domain: substructure
    builder: conv2d
    config: {{out_channels: 4, kernel_size: 1, groups: 1}}
    dataset: {dataset}
    inputs:
      - {{name: input, shape: [batch, 4, 6, 6], dtype: float32}}
    outputs: [output]
    batch_sizes: [2]
    precisions: [fp32]
{extra}"""
# Fast run control, offline only, no audits, a small peak GEMM.
FAST_TIERS = """\
tiers:
  full:
    perf: {min_time_s: 0.05, min_rounds: 3, warmup_rounds: 1, windows: 1}
    scenarios: {offline: all}
    peak_gemm: 32
"""


def conv_zoo(folder: Path, models: dict[str, str], datasets: str = "") -> Path:
    """Write a zoo of tiny 1x1 convolutions on fake data into ``folder``, one per
    name in ``models``, whose value is extra YAML for the entry (indented four
    spaces, e.g. "    timeout_s: 15\n"; "    dataset: NAME" is taken as the
    entry's dataset); ``datasets`` adds entries to the datasets section."""
    entries = []
    for name, extra in models.items():
        dataset = "fake"
        lines = []
        for line in extra.splitlines(keepends=True):
            if line.strip().startswith("dataset:"):
                dataset = line.split(":", 1)[1].strip()
            else:
                lines.append(line)
        if dataset == "fake":
            lines.append("    dataset_options: {samples: 4}\n")
        entries.append(_CONV_MODEL.format(name=name, dataset=dataset, extra="".join(lines)))
    (folder / "zoo.yaml").write_text(
        "defaults:\n  tolerances: {fp32: {max_abs: 1.0e-4}}\n" + FAST_TIERS
        + "datasets:\n  fake: {id: fake, format: fake}\n" + datasets + "models:\n"
        + "".join(entries))
    return folder


# The suites' zoo items: the per-op items (test_ops.py) run only where a test asks.
ZOO_SUITES = ("suites/accuracy", "suites/performance", "suites/compiler_coverage/test_compile.py")


def session_command(folder: Path, hardware: str, *args: str,
                    target: str | tuple[str, ...] = ZOO_SUITES, report: str | None = None
                    ) -> list[str]:
    """The command line of pytest over ``target`` with the zoo in ``folder``."""
    targets = (target,) if isinstance(target, str) else target
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *targets, "-q",
            "--zoo", str(folder / "zoo.yaml"), "--hardware", hardware,
            "--cache-dir", str(folder / "cache"), "--report-dir", str(folder / (report or hardware)),
            *args]


def run_session(folder: Path, hardware: str, *args: str, target: str | tuple[str, ...] = ZOO_SUITES,
                report: str | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """pytest over ``target`` with the tiny zoo in ``folder``, as a user runs it;
    a session that runs past ``timeout_s`` fails the test (subprocess.TimeoutExpired)
    instead of hanging CI."""
    return subprocess.run(session_command(folder, hardware, *args, target=target, report=report),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env=python_env())
