"""Where a session ran, from its records, pure: the hosts and MLPerf's system
description (number of nodes, accelerators per node). A merged session
(xpuperf merge) counts every shard's hosts; a record without a device index
ran on its backend's default device, which counts as one accelerator."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

DEFAULT_DEVICE = "default"


def system(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{"hosts": [...], "nodes": n, "accelerators_per_node": m} of these records;
    m is the most devices one host used."""
    devices: dict[str, set[str]] = {}
    for rec in records:
        host = rec.get("host")
        if host:
            index = rec.get("device_index")
            devices.setdefault(str(host), set()).add(
                DEFAULT_DEVICE if index is None else str(index))
    return {"hosts": sorted(devices), "nodes": len(devices),
            "accelerators_per_node": max((len(d) for d in devices.values()), default=0)}
