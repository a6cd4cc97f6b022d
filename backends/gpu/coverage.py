"""What the compiler took of a model: ops counted in eager runs, and what
torch.compile captured against what it left to run eagerly.

Eager counts the aten ops one forward dispatches (all run on the device: nodes
native = nodes total). torch.compile counts the calls in the FX graphs dynamo
hands to inductor (native), and each graph break as an op run eagerly between
them (the call dynamo could not trace); the fallback ops are the breaks' reasons.
The two counts are of different units (aten ops against torch-level calls), so
each report names its unit.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

EAGER_UNIT = "aten ops dispatched in one forward"
COMPILE_UNIT = "torch calls dynamo captured in graphs, plus one per graph break"
_CALLS = ("call_function", "call_method", "call_module")


def count_aten_ops(forward: Callable[..., Any], args: list[torch.Tensor]) -> Counter[str]:
    """The aten ops (by name) of one ``forward(*args)``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops: Counter[str] = Counter()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                               ) -> Any:
            ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Count():
        forward(*args)
    return ops


@dataclass
class Capture:
    """torch.compile with inductor, counting what each compile captured."""

    config_patches: dict[str, Any] = field(default_factory=dict)
    graph_nodes: list[int] = field(default_factory=list)

    def backend(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        self.graph_nodes.append(sum(1 for n in gm.graph.nodes if n.op in _CALLS))
        return compile_fx(gm, example_inputs, config_patches=self.config_patches)


def start() -> None:
    """Empty dynamo's in-memory cache and the counters, so that what follows is
    a compile (not a reuse of an earlier one in this process) and is counted alone."""
    import torch._inductor.metrics as metrics
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    metrics.reset()


def captured(capture: Capture) -> dict[str, Any]:
    """nodes_native, nodes_total, fallback_ops and the graph counts since
    ``start()``: call it after the first compiled shape, as each further shape
    compiles the same graphs again."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    native = sum(capture.graph_nodes)
    return {
        "nodes_native": native,
        "nodes_total": native + sum(breaks.values()),
        # A reason's first line names the call (the rest is dynamo's advice).
        "fallback_ops": sorted({reason.splitlines()[0] for reason in breaks}),
        "details": {"graphs": len(capture.graph_nodes), "graph_breaks": sum(breaks.values()),
                    "nodes_counted": COMPILE_UNIT},
    }


def work() -> dict[str, Any]:
    """Inductor's work since ``start()``: kernels generated and FX graph cache use
    (a graph loaded from the cache generates no kernels)."""
    import torch._inductor.metrics as metrics
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {"kernels_generated": metrics.generated_kernel_count,
            "inductor_cache": {"hits": inductor["fxgraph_cache_hit"],
                               "misses": inductor["fxgraph_cache_miss"]}}
