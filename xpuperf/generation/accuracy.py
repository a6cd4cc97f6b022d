"""The generation accuracy gates (pure): an engine against the fp32 reference.

- first-token logits: cosine and max abs difference of the logits after the prompt;
- greedy tokens: the share of the reference's N greedy tokens the engine matches
  before its first divergence (after one, the contexts differ and nothing later
  compares);
- perplexity on a shipped text sample, as a ratio to the reference's (seeded
  weights give no meaningful absolute perplexity, a ratio still shows a wrong
  network).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# zoo.yaml's per-precision tolerance keys, and the direction each bounds.
TOLERANCE_KEYS = ("min_cosine", "max_abs", "min_greedy_match", "max_perplexity_ratio")


def logits_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    ref, got = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"logits of shape {got.shape}, the reference's are {ref.shape}")
    norms = np.linalg.norm(ref) * np.linalg.norm(got)
    cosine = float(ref @ got / norms) if norms else float(np.array_equal(ref, got))
    return {"cosine": cosine, "max_abs": float(np.max(np.abs(ref - got)))}


def greedy_match(reference: Sequence[int], candidate: Sequence[int]) -> float:
    """The share of ``reference`` matched before the first divergence."""
    if not reference:
        raise ValueError("no reference tokens to compare")
    matched = 0
    for want, got in zip(reference, candidate):
        if want != got:
            break
        matched += 1
    return matched / len(reference)


def perplexity(logits: np.ndarray, tokens: Sequence[int]) -> float:
    """exp(mean negative log-likelihood of tokens[1:]); logits[i] predicts tokens[i+1]."""
    logits = np.asarray(logits, np.float64)[:-1]
    targets = np.asarray(tokens[1:])
    if len(targets) == 0 or logits.shape[0] != len(targets):
        raise ValueError(f"{len(tokens)} tokens need {len(tokens)} rows of logits, got "
                         f"{logits.shape[0] + 1}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.exp(-log_probs[np.arange(len(targets)), targets].mean()))


def verdict(found: Mapping[str, Any], tolerance: Mapping[str, float]) -> list[str]:
    """What falls outside ``tolerance``: one sentence per gate, empty when all pass.
    ``found`` has cosine, max_abs, greedy_match and perplexity_ratio."""
    problems = []
    checks = (("min_cosine", "cosine", "first-token logits cosine", lambda v, t: v >= t),
              ("max_abs", "max_abs", "first-token logits max abs diff", lambda v, t: v <= t),
              ("min_greedy_match", "greedy_match", "greedy tokens matched before divergence",
               lambda v, t: v >= t),
              ("max_perplexity_ratio", "perplexity_ratio", "perplexity / reference perplexity",
               lambda v, t: v <= t))
    for key, figure, label, ok in checks:
        if key in tolerance and not ok(found[figure], tolerance[key]):
            bound = ">=" if key.startswith("min") else "<="
            problems.append(f"{label} {found[figure]:.6g}, needs {bound} {tolerance[key]:g}")
    return problems
