"""The vendors' published figures (published.yaml): reference rows for xpuperf compare.

They are shown beside measured rows of the same zoo model and never mixed into
any measured figure or ratio: a vendor's number on its own card, at the full
zoo's shapes, says what the hardware can do, not what this run measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PUBLISHED = Path(__file__).with_name("published.yaml")

_SOURCE_KEYS = {"vendor": True, "hardware": True, "title": True, "url": False, "figures": True,
                "tdp_w": False, "tdp_source": False}
_FIGURE_KEYS = {"model": True, "precision": True, "qps": True, "batch_size": False,
                "latency_ms": False, "metric": False, "note": False}


class PublishedError(ValueError):
    """published.yaml does not hold what this module expects."""


@dataclass(frozen=True)
class Published:
    """One published figure and where it comes from."""

    vendor: str
    hardware: str
    model: str
    precision: str
    qps: float
    source: str
    url: str = ""
    batch_size: int | None = None
    latency_ms: float | None = None
    metric: str = ""
    note: str = ""
    tdp_w: float | None = None  # the card's thermal design power, as its source states it
    tdp_source: str = ""

    @property
    def qps_per_tdp(self) -> float | None:
        """QPS over the card's TDP: a rated power, not a measured one, so it is
        never shown as QPS per watt."""
        return self.qps / self.tdp_w if self.tdp_w else None


def load_published(path: Path = PUBLISHED) -> list[Published]:
    """Every figure of ``path``, in file order."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PublishedError(f"{path}: cannot read the published figures: {e}") from None
    sources = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(sources, list):
        raise PublishedError(f"{path}: needs a top-level 'sources:' list")
    out = []
    for i, src in enumerate(sources):
        where = f"{path}: sources[{i}]"
        _check(where, src, _SOURCE_KEYS)
        tdp = src.get("tdp_w")
        if tdp is not None and (not isinstance(tdp, (int, float)) or tdp <= 0
                                or not src.get("tdp_source")):
            raise PublishedError(f"{where}.tdp_w: a positive number of watts with its "
                                 f"tdp_source, got {tdp!r} from {src.get('tdp_source')!r}")
        for j, fig in enumerate(src["figures"] or []):
            _check(f"{where}.figures[{j}]", fig, _FIGURE_KEYS)
            if not isinstance(fig["qps"], (int, float)) or fig["qps"] <= 0:
                raise PublishedError(f"{where}.figures[{j}].qps: a positive number, "
                                     f"got {fig['qps']!r}")
            out.append(Published(
                vendor=str(src["vendor"]), hardware=str(src["hardware"]),
                source=" ".join(str(src["title"]).split()), url=str(src.get("url") or ""),
                model=str(fig["model"]), precision=str(fig["precision"]), qps=float(fig["qps"]),
                batch_size=fig.get("batch_size"), latency_ms=fig.get("latency_ms"),
                metric=str(fig.get("metric") or ""), note=str(fig.get("note") or ""),
                tdp_w=float(tdp) if tdp is not None else None,
                tdp_source=" ".join(str(src.get("tdp_source") or "").split())))
    return out


def _check(where: str, raw: Any, keys: dict[str, bool]) -> None:
    if not isinstance(raw, dict):
        raise PublishedError(f"{where}: a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(keys))
    missing = sorted(k for k, required in keys.items() if required and k not in raw)
    if unknown or missing:
        raise PublishedError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])))
