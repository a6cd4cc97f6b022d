"""Which items one shard of a session runs (`--shard K/N`), pure.

A shard is a complete session over part of the selection, on whatever machine
a scheduler (a Slurm array task, a Kubernetes Indexed Job's pod) gives it;
`xpuperf merge` joins the shards' report folders into one session. The split
must be the same in every shard without their talking to each other, so it is
a function of the collection alone (and of the durations file all shards are
given): no randomness, no clock, no host.

Units are groups, as `--dist loadgroup` keeps them (a model and precision's
items compile once and run together); an item without a group is a unit of its
own. Units go, longest first, to the shard with the least work so far (the
LPT rule: within 4/3 of the best split), the work of a unit being the
seconds its items took in the run the durations come from, or its item count
when there are none. Within a shard the items keep the collection's order.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    pass


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """'2/4' -> Shard(2, 4); ShardError naming the fix otherwise."""
    found = _SPEC.match(text)
    if not found:
        raise ShardError(f"--shard {text!r}: expected K/N, e.g. 2/4 for the second of four "
                         "shards (K from 1)")
    index, count = int(found[1]), int(found[2])
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text}: K must be from 1 to N and N at least 1 "
                         f"(a Kubernetes Indexed Job's index counts from 0: pass index+1)")
    return Shard(index, count)


def units(items: Sequence[tuple[str, str | None]]) -> list[list[str]]:
    """(item id, group or None) in collection order -> the units, each its items
    in that order, the units in the order of their first item."""
    grouped: dict[str, list[str]] = {}
    for item, group in items:
        grouped.setdefault(f"group {group}" if group else f"item {item}", []).append(item)
    return list(grouped.values())


def plan(work_units: Sequence[Sequence[str]], count: int,
         durations: Mapping[str, float] | None = None) -> list[int]:
    """The shard (1-based) of each unit. With ``durations`` (item id -> seconds
    of an earlier run), a unit weighs its items' seconds, an item the run did
    not have weighing the median of those it had; without, its item count."""
    known = [s for s in (durations or {}).values() if s >= 0]
    fallback = statistics.median(known) if known else 1.0

    def weight(unit: Sequence[str]) -> float:
        if not durations:
            return float(len(unit))
        return sum(durations.get(item, fallback) for item in unit)
    weights = [weight(u) for u in work_units]
    loads = [0.0] * count
    assigned = [0] * len(work_units)
    # Heaviest first; equal weights in collection order, so the plan is stable.
    for i in sorted(range(len(work_units)), key=lambda i: (-weights[i], i)):
        shard = min(range(count), key=lambda s: (loads[s], s))
        loads[shard] += weights[i]
        assigned[i] = shard + 1
    return assigned


def select(items: Sequence[tuple[str, str | None]], shard: Shard,
           durations: Mapping[str, float] | None = None) -> set[str]:
    """The item ids of ``items`` (id, group) that ``shard`` runs."""
    work = units(items)
    return {item for unit, owner in zip(work, plan(work, shard.count, durations))
            if owner == shard.index for item in unit}


def durations_of(records: Iterable[Mapping]) -> dict[str, float]:
    """item id -> seconds from a session's records.json entries (those with both)."""
    out = {}
    for rec in records:
        item, seconds = rec.get("item"), rec.get("duration_s")
        if isinstance(item, str) and isinstance(seconds, (int, float)) \
                and not isinstance(seconds, bool) and seconds >= 0:
            out[item] = float(seconds)
    return out
