"""`--shard K/N` and `--shard-durations PATH`: this session runs one shard of
the selection (xpuperf.shards says which items); the pytest side, registered by
xpuperf.plugin. Every shard is a whole session with its own report folder;
`xpuperf merge` joins them (docs/scale-out.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpuperf import shards
from xpuperf.report_folder import RECORDS

_SHARD = pytest.StashKey[shards.Shard]()
_DURATIONS = pytest.StashKey[dict]()  # item id -> seconds, from --shard-durations


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xpuperf")
    g.addoption("--shard", default=None, metavar="K/N",
                help="run the K-th of N shards of the selection (K from 1), each (model, "
                     "precision) group whole in one shard; join the shards' report folders "
                     "with `xpuperf merge` (docs/scale-out.md)")
    g.addoption("--shard-durations", default=None, metavar="PATH",
                help="with --shard: balance the shards by the item durations of an earlier "
                     f"run: its report folder or its {RECORDS} (default: by item count)")


def pytest_configure(config: pytest.Config) -> None:
    text, path = config.getoption("shard"), config.getoption("shard_durations")
    if path and not text:
        raise pytest.UsageError("--shard-durations balances shards: it needs --shard K/N")
    if text:
        try:
            config.stash[_SHARD] = shards.parse(text)
        except shards.ShardError as e:
            raise pytest.UsageError(str(e)) from None
        config.stash[_DURATIONS] = load_durations(Path(path)) if path else {}


def load_durations(path: Path) -> dict[str, float]:
    """item id -> seconds from a report folder's records.json (or that file);
    a usage error naming the fix when it cannot be read."""
    file = path / RECORDS if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise pytest.UsageError(f"--shard-durations {path}: cannot read {file}: {e}; give the "
                                "report folder of an earlier run (--report-dir)") from None
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise pytest.UsageError(f"--shard-durations {file}: not an xpuperf {RECORDS} (no "
                                "'records' list); give the report folder of an earlier run")
    return shards.durations_of(r for r in records if isinstance(r, dict))


def shard_of(config: pytest.Config) -> shards.Shard | None:
    """This session's --shard, or None."""
    return config.stash.get(_SHARD, None)


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "")) or None


@pytest.hookimpl(trylast=True)  # after xpuperf.plugin's ordering and its own deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = shard_of(config)
    if shard is None:
        return
    chosen = shards.select([(i.nodeid, _group(i)) for i in items], shard,
                           config.stash[_DURATIONS])
    dropped = [i for i in items if i.nodeid not in chosen]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i.nodeid in chosen]
