"""Share of peak, two ways, for every micro-benchmark figure: of the device's
ceiling measured in this session (its best GEMM per precision and its best
large copy: xpuperf.ceilings, the table the other items' ceilings are in too), and
of the card's datasheet (datasheet.yaml beside this file; a vendor adds a row).

An op is judged against the ceiling of what bounds it at its arithmetic
intensity (the roofline): min(compute peak, intensity x bandwidth). Pure but
for the YAML read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from xpuperf import safe_yaml

DATASHEET = Path(__file__).with_name("datasheet.yaml")


@dataclass(frozen=True)
class Peaks:
    """One source's peaks: FLOP/s per precision and bytes/s (None where unknown)."""

    source: str
    flops: Mapping[str, float]
    bytes_per_s: float | None

    def share(self, precision: str, flops: float, bytes_: float, seconds: float
              ) -> dict[str, Any]:
        """The roofline's least time for the op over its measured time: its FLOPs
        at the compute peak or its bytes at the bandwidth, whichever takes longer
        (that is the op's bound), as a fraction."""
        least = {}
        compute = self.flops.get(precision)
        if flops and compute:
            least["compute"] = flops / compute
        if bytes_ and self.bytes_per_s:
            least["memory"] = bytes_ / self.bytes_per_s
        if not least or not seconds:
            return {"share": None, "bound": None, "source": self.source,
                    "why": f"no {precision} compute peak or bandwidth known here"
                    if seconds else "not timed"}
        bound = max(least, key=least.__getitem__)
        out = {"share": least[bound] / seconds, "bound": bound, "source": self.source,
               "peak_flops": compute, "peak_bytes_per_s": self.bytes_per_s}
        if flops and not compute:
            out["why"] = f"no {precision} compute peak known here: the memory roof alone"
        return out


@lru_cache(maxsize=4)
def _cards(path: Path) -> tuple[dict[str, Any], ...]:
    doc = safe_yaml.load(path.read_text(encoding="utf-8"), str(path)) or {}
    cards = doc.get("cards") if isinstance(doc, dict) else None
    if not isinstance(cards, list):
        raise ValueError(f"{path}: expected a list under 'cards:'")
    for n, card in enumerate(cards):
        missing = [k for k in ("sku", "match", "source") if k not in card]
        if missing or not ("tflops" in card or "memory_gbps" in card):
            raise ValueError(f"{path}: cards[{n}] needs sku, match, source and tflops or "
                             f"memory_gbps (lacks {', '.join(missing) or 'both figures'})")
    return tuple(cards)


def datasheet(device: str, path: Path = DATASHEET) -> Peaks | None:
    """The datasheet row whose ``match`` finds ``device``, or None."""
    for card in _cards(Path(path)):
        if re.search(card["match"], device, re.IGNORECASE):
            return Peaks(f"datasheet: {card['sku']} ({card['source']})",
                         {p: float(v) * 1e12 for p, v in (card.get("tflops") or {}).items()},
                         float(card["memory_gbps"]) * 1e9 if card.get("memory_gbps") else None)
    return None
