"""Shards' sessions joined into one (`xpuperf merge`), pure: the checks that
they are parts of one run, and the joined records, manifest and
pytest-benchmark document. Reading and writing the folders is
xpuperf.report.shard_folders'.

Shards join when they ran the same commit, tier, hardware and zoo (a
difference is named, and --allow-mixed lets it pass, as xpuperf compare's
does), each shard number of one count once, and no item twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from xpuperf.report.system import system
from xpuperf.shards import ShardError, parse

# The manifest keys that must agree, and how a message names each.
SAME = (("commit", "commit"), ("tier", "tier"), ("hardware", "hardware"),
        ("zoo_version", "zoo digest"))


class MergeError(ValueError):
    pass


@dataclass
class ShardRun:
    """One shard's report folder as read: ``source`` names it in messages."""

    source: str
    manifest: Mapping[str, Any]
    records: list[dict[str, Any]]
    info: Mapping[str, Any]
    benchmark: Mapping[str, Any] | None = None
    index: int = field(init=False, default=0)
    count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        text = self.manifest.get("shard")
        if not text:
            raise MergeError(f"{self.source}: not a shard (its session ran without --shard K/N); "
                             "merge the report folders of one run's shards")
        try:
            spec = parse(str(text))
        except ShardError as e:
            raise MergeError(f"{self.source}: {e}") from None
        self.index, self.count = spec.index, spec.count


def differences(runs: Sequence[ShardRun]) -> list[str]:
    """What the shards disagree on, one line per manifest key, each value with
    the shards that have it; [] when they agree."""
    out = []
    for key, name in SAME:
        values: dict[str, list[str]] = {}
        for run in runs:
            values.setdefault(str(run.manifest.get(key) or "unknown"), []).append(run.source)
        if len(values) > 1:
            out.append(f"{name} differs: " + "; ".join(
                f"{value} ({', '.join(sources)})" for value, sources in values.items()))
    return out


def check(runs: Sequence[ShardRun], allow_mixed: bool = False) -> list[str]:
    """MergeError unless ``runs`` are each shard of one count once, with no item
    twice, and (unless ``allow_mixed``) of one commit, tier, hardware and zoo.
    Returns the differences allowed (what the merged session says of itself)."""
    if not runs:
        raise MergeError("no shard folders given")
    counts = sorted({r.count for r in runs})
    if len(counts) > 1:
        raise MergeError("the shards are of different splits: " + "; ".join(
            f"{r.source} is shard {r.index}/{r.count}" for r in runs))
    count = counts[0]
    problems = []
    given: dict[int, list[str]] = {}
    for run in runs:
        given.setdefault(run.index, []).append(run.source)
    twice = {i: s for i, s in sorted(given.items()) if len(s) > 1}
    problems += [f"shard {i} of {count} given {len(s)} times ({', '.join(s)})"
                 for i, s in twice.items()]
    missing = [i for i in range(1, count + 1) if i not in given]
    if missing:
        problems.append(f"shard{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(str, missing))} of {count} missing")
    if not twice:  # the same folder twice repeats every item: said above
        owner: dict[str, str] = {}
        for run in runs:
            for rec in run.records:
                item = str(rec.get("item"))
                if item in owner:
                    problems.append(f"item {item} is in two shards ({owner[item]}, "
                                    f"{run.source}): they are not shards of one selection")
                    break
                owner[item] = run.source
    mixed = differences(runs)
    if mixed and not allow_mixed:
        problems.append("; ".join(mixed) + ": shards of one run agree; rerun the odd ones "
                        "alike, or pass --allow-mixed to merge anyway")
    if problems:
        raise MergeError("; ".join(problems))
    return mixed


def ordered(runs: Sequence[ShardRun]) -> list[ShardRun]:
    return sorted(runs, key=lambda r: r.index)


def records(runs: Sequence[ShardRun]) -> list[dict[str, Any]]:
    """Every shard's records, shard by shard, each with its shard's number."""
    return [{**rec, "shard": f"{run.index}/{run.count}"} for run in ordered(runs)
            for rec in run.records]


def info(runs: Sequence[ShardRun], merged: Sequence[Mapping[str, Any]],
         mixed: Sequence[str]) -> dict[str, Any]:
    """The merged session's info (what heads report.html and every result's Host
    Info): the first shard's, with where all shards ran and, when they were
    let differ, how."""
    first = ordered(runs)[0]
    statuses = sorted({str(r.info.get("run") or r.manifest.get("status") or "-") for r in runs})
    out = {**first.info, **system(merged), "shards": len(runs),
           "run": statuses[0] if len(statuses) == 1 else "mixed: " + "; ".join(statuses)}
    if mixed:
        out["mixed"] = "; ".join(mixed)
    return out


def manifest(runs: Sequence[ShardRun], merged: Sequence[Mapping[str, Any]],
             mixed: Sequence[str]) -> dict[str, Any]:
    """The merged session.json: finished when every shard finished; the worst
    exit status; the shards' selections summed."""
    shards = ordered(runs)
    first = shards[0].manifest
    picks = [r.manifest.get("selection") or {} for r in shards]
    counted = [(p.get("items"), p.get("deselected")) for p in picks]
    items = deselected = None
    if all(isinstance(n, int) and isinstance(d, int) for n, d in counted):
        items = sum(n for n, _ in counted)
        # Every shard collected the same items; each deselected the others' shards'.
        deselected = counted[0][0] + counted[0][1] - items
    return {
        "finished": all(r.manifest.get("finished") is True for r in shards),
        "started": min(str(r.manifest.get("started", "")) for r in shards),
        "ended": max(str(r.manifest.get("ended", "")) for r in shards),
        "status": info(runs, merged, mixed)["run"],
        "exit_status": max(int(r.manifest.get("exit_status") or 0) for r in shards),
        **{key: first.get(key) for key, _ in SAME},
        **({"mixed": "; ".join(mixed)} if mixed else {}),
        "reports": "written",
        "selection": {"-k": picks[0].get("-k"), "-m": picks[0].get("-m"), "items": items,
                      "deselected": deselected},
        "merged_from": [{"shard": f"{r.index}/{r.count}", "folder": r.source,
                         "host": r.manifest.get("host"), "finished": r.manifest.get("finished"),
                         "exit_status": r.manifest.get("exit_status")} for r in shards],
    }


def benchmark(runs: Sequence[ShardRun]) -> dict[str, Any] | None:
    """One pytest-benchmark document of the shards' benchmarks (the first
    shard's machine and commit info, each benchmark's own figures), as
    --benchmark-compare and --baseline read it; None when no shard has one."""
    docs = [r.benchmark for r in ordered(runs) if r.benchmark]
    if not docs:
        return None
    return {**docs[0], "datetime": max(str(d.get("datetime", "")) for d in docs),
            "benchmarks": [b for d in docs for b in d.get("benchmarks") or []]}
