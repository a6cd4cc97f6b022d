"""A tiny zoo and whole pytest sessions over it: the selftests that prove a fault
is caught end to end (the faulty backends are in fakes.py) share them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


# The suites' zoo items: the per-op items (test_ops.py) run only where a test asks.
ZOO_SUITES = ("suites/accuracy", "suites/performance", "suites/compiler_coverage/test_compile.py")


def run_session(folder: Path, hardware: str, *args: str, target: str | tuple[str, ...] = ZOO_SUITES,
                report: str | None = None) -> subprocess.CompletedProcess:
    """pytest over ``target`` with the tiny zoo in ``folder``, as a user runs it."""
    targets = (target,) if isinstance(target, str) else target
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *targets, "-q",
         "--zoo", str(folder / "zoo.yaml"), "--hardware", hardware,
         "--cache-dir", str(folder / "cache"), "--report-dir", str(folder / (report or hardware)),
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
