"""pytest-xdist scheduling that sends every (model, precision) group whole to one
worker, for `-n N --dist loadgroup`.

pytest-xdist's own loadgroup cannot be relied on: it finds groups through an
``@group`` suffix it writes into item node ids, which pytest 9.2's structured
node ids no longer take (pytest-xdist issue 1386), so a group's items are spread
over workers and each compiles the model again; and after a worker crash its
scheduler re-queues work it already did, leaving the workers waiting for items
that never come (issues 1323, 1327, 1378). This scheduler gets the groups from
the zoo by item id and implements xdist's Scheduling protocol itself.

A worker runs an item only once it holds the next one (or has been told to shut
down), so a worker is sent the next unit of work while it still holds one item.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import pytest
from xdist.report import report_collection_diff
from xdist.workermanage import WorkerController, parse_tx_spec_config


class GroupScheduling:
    """Units of work are whole groups (``group_of(nodeid)``); an item without a
    group is a unit of its own. After a crash, the item that was running is
    reported failed by xdist and the rest of the dead worker's items go back to
    the front of the queue, still in their groups, for the next free worker."""

    def __init__(self, config: pytest.Config, group_of: Callable[[str], str | None]):
        self.group_of = group_of
        self.numnodes = len(parse_tx_spec_config(config))
        # Every worker's collection, the dead ones' included: the initial set is complete
        # once numnodes have reported, and a replacement's must equal the first.
        self.collected: dict[WorkerController, list[str]] = {}
        self.collection: list[str] = []
        self.index: dict[str, int] = {}
        # Per live worker: the node ids sent to it and not completed, in its run order.
        self.pending: dict[WorkerController, list[str]] = {}
        self.queue: deque[list[str]] = deque()

    @property
    def nodes(self) -> list[WorkerController]:
        return list(self.pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.collected) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        # A worker's last item runs once it is told to shut down, which this allows.
        return (self.collection_is_completed and not self.queue
                and all(len(p) < 2 for p in self.pending.values()))

    @property
    def has_pending(self) -> bool:
        return bool(self.queue) or any(self.pending.values())

    def add_node(self, node: WorkerController) -> None:
        self.pending[node] = []

    def add_node_collection(self, node: WorkerController, collection: Sequence[str]) -> None:
        self.collected[node] = list(collection)
        if self.index:
            self._check_same(node)

    def mark_test_complete(self, node: WorkerController, item_index: int,
                           duration: float = 0) -> None:
        self.pending[node].remove(self.collection[item_index])
        self._feed(node)

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("only --dist worksteal moves single items between workers")

    def remove_pending_tests_from_node(self, node: WorkerController,
                                       indices: Sequence[int]) -> None:
        raise NotImplementedError("only --dist worksteal moves single items between workers")

    def remove_node(self, node: WorkerController) -> str | None:
        """Forget a worker that finished or died; return the item it died on."""
        left = self.pending.pop(node)
        if not left:
            return None
        crashed, rest = left[0], left[1:]
        # Not run again: xdist reports it failed, and it would likely crash again.
        self.queue.extendleft(reversed(self._units(rest)))
        for other in self.nodes:
            self._feed(other)
        return crashed

    def schedule(self) -> None:
        if not self.index:
            self.collection = next(iter(self.collected.values()))
            self.index = {nodeid: i for i, nodeid in enumerate(self.collection)}
            for node in self.collected:
                self._check_same(node)
            self.queue.extend(self._units(self.collection))
        for node in self.nodes:
            self._feed(node)

    def _check_same(self, node: WorkerController) -> None:
        first = next(iter(self.collected))
        diff = report_collection_diff(self.collection, self.collected[node],
                                      first.gateway.id, node.gateway.id)
        if diff:
            pytest.exit(diff, pytest.ExitCode.INTERRUPTED)

    def _units(self, nodeids: list[str]) -> list[list[str]]:
        units: dict[str, list[str]] = {}
        for nodeid in nodeids:
            units.setdefault(self.group_of(nodeid) or nodeid, []).append(nodeid)
        return list(units.values())

    def _feed(self, node: WorkerController) -> None:
        if node.shutting_down or node not in self.collected:
            return
        while len(self.pending[node]) < 2 and self.queue:
            unit = self.queue.popleft()
            self.pending[node].extend(unit)
            node.send_runtest_some([self.index[nodeid] for nodeid in unit])
        if not self.queue:
            node.shutdown()
