"""The one loader for YAML a user hands xpuperf (a zoo file, --backend-config).

yaml's safe loader builds no objects, but it still expands aliases: a kilobyte
of nested anchors (a "billion laughs") stands for billions of nodes, and
anything that walks the document (the zoo's line index, its validation, a
report) walks them all until the host runs out of memory. This loader counts
the nodes each alias stands for as it reads and stops at MAX_EXPANDED_NODES,
and refuses an alias inside its own anchor (a document that contains itself),
each with the file and line of the alias.
"""
from __future__ import annotations

from typing import Any

import yaml

# Nodes that aliases may add to a document in all. zoo.yaml's anchors (shared
# configs and smoke overrides) add a few hundred; one alias bomb level adds its
# fan-out times the level below, so a bomb passes this within a few levels.
MAX_EXPANDED_NODES = 100_000


class YamlError(ValueError):
    """The YAML cannot be read; the message starts with name:line."""


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses alias expansion beyond MAX_EXPANDED_NODES and
    recursive aliases, with YamlError naming ``name`` and the alias's line."""

    def __init__(self, text: str, name: str):
        super().__init__(text)
        self.name = name
        self._sizes: dict[int, int] = {}  # id(node) -> the nodes it stands for, expanded
        self._open: set[str] = set()  # anchors whose node is being composed
        self._expanded = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            where = f"{self.name}:{event.start_mark.line + 1}"
            if event.anchor in self._open:
                raise YamlError(f"{where}: alias *{event.anchor} is inside its own anchor "
                                f"&{event.anchor}: a document that contains itself cannot be "
                                "read; copy the values instead")
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._expanded += self._size(target)
                if self._expanded > MAX_EXPANDED_NODES:
                    raise YamlError(f"{where}: alias *{event.anchor} makes the aliases stand for "
                                    f"more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb?); "
                                    "write the values out or use fewer nested aliases")
        return super().compose_node(parent, index)

    def compose_sequence_node(self, anchor: str | None) -> Any:
        return self._composing(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor: str | None) -> Any:
        return self._composing(anchor, super().compose_mapping_node)

    def _composing(self, anchor: str | None, compose: Any) -> Any:
        if anchor is not None:
            self._open.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._open.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """Nodes ``node`` stands for with its aliases expanded; memoized, so that
        the count costs one visit of each node however often it is aliased."""
        key = id(node)
        if key not in self._sizes:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            self._sizes[key] = 1 + sum(self._size(c) for c in children)
        return self._sizes[key]


def load(text: str, name: str) -> Any:
    """The document in ``text`` (read from ``name``); YamlError with name:line
    when it is not valid YAML or its aliases expand too far."""
    loader = SafeLoader(text, name)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise YamlError(problem(e, name)) from None
    finally:
        loader.dispose()


def problem(e: yaml.YAMLError, name: str) -> str:
    """'name:line: not valid YAML: what' for one of yaml's errors."""
    mark = getattr(e, "problem_mark", None)
    where = f"{name}:{mark.line + 1}" if mark else name
    return f"{where}: not valid YAML: {getattr(e, 'problem', e)}"
