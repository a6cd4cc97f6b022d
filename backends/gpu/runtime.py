"""What runs a model the GPU backend compiled (backends/gpu/backend.py): host
arrays fed to the device in the model's order, the CUDA-graph replay of one
captured forward per input shape, the compiled model and its device-resident
path (inputs and outputs kept on the device, timed by CUDA events)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Compiled, CompileReport, Resident


class Feeder:
    """Host arrays -> device tensors in the model's order; float inputs in the
    precision's compute dtype (with ``only``, just the float inputs of that
    dtype: an ONNX graph's fp16 and fp64 inputs stay as it declares them)."""

    def __init__(self, names: tuple[str, ...], device: Any, dtype: Any, only: Any = None):
        self.names, self.device, self.dtype, self.only = names, device, dtype, only

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        import torch

        if feeds.keys() != set(self.names):
            raise KeyError(f"feeds {sorted(feeds)}; the model's inputs are {list(self.names)}"
                           + _difference("missing", set(self.names) - feeds.keys())
                           + _difference("unknown", feeds.keys() - set(self.names)))
        out = []
        for name in self.names:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device)
            cast = t.is_floating_point() and self.only in (None, t.dtype)
            out.append(t.to(self.dtype) if cast else t)
        return out


def _difference(what: str, names: set[str]) -> str:
    return f" ({what}: {', '.join(sorted(names))})" if names else ""


class CudaGraphs:
    """The module replayed as one CUDA graph per input shape, captured on the
    first call of that shape (after warm-up runs on a side stream, which make the
    libraries' lazy allocations outside the capture)."""

    WARMUP = 3
    # The outputs are the graph's static buffers: TorchCompiled.run copies them to
    # the host at once, TorchResident.run clones them.
    OVERWRITES_OUTPUTS = True

    def __init__(self, forward: Callable[..., Any], device: Any):
        self.forward, self.device = forward, device
        self.graphs: dict[tuple, tuple[list[Any], Any, Any]] = {}

    def __call__(self, *args: Any) -> Any:
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        inputs, graph, outputs = self.graphs[key]
        for static, a in zip(inputs, args):
            static.copy_(a)
        graph.replay()
        return outputs  # overwritten by the next replay: see OVERWRITES_OUTPUTS

    def _capture(self, args: tuple[Any, ...]) -> tuple[list[Any], Any, Any]:
        import torch

        inputs = [a.clone() for a in args]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.forward(*inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.forward(*inputs)
        return inputs, graph, outputs


class TorchCompiled(Compiled):
    def __init__(self, forward: Callable[..., Any], feeder: Feeder,
                 output_names: tuple[str, ...], numerics: Callable[[], None],
                 report: CompileReport, widen: bool = True):
        import torch

        self._torch = torch
        self._forward, self._feeder = forward, feeder
        self._outputs, self._numerics = output_names, numerics
        # False for an ONNX graph, whose outputs come in the dtypes it declares.
        self._widen = widen
        self.report = report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._to_host(self._forward_on(self._feeder(feeds)))

    def resident(self) -> "TorchResident":
        return TorchResident(self)

    def close(self) -> None:
        device = self._feeder.device
        self._forward = None
        if device.type == "cuda":
            self._torch.cuda.empty_cache()

    def _forward_on(self, inputs: list[Any]) -> tuple[Any, ...]:
        """The model on device tensors; the outputs as a tuple, on the device
        (queued there, not waited for)."""
        self._numerics()
        with self._torch.inference_mode():
            out = self._forward(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _to_host(self, outputs: tuple[Any, ...]) -> dict[str, np.ndarray]:
        # numpy has no bf16: floats come back in fp32, as the reference's do.
        return {name: (o.float() if o.is_floating_point() and (self._widen or o.dtype ==
                                                                self._torch.bfloat16)
                       else o).cpu().numpy()
                for name, o in zip(self._outputs, outputs)}


class TorchResident(Resident):
    """TorchCompiled with its inputs and outputs kept on its torch device. On
    CUDA, the device times come from CUDA events and the memory peak from the
    caching allocator; on the CPU (device=cpu) there is neither, and each says
    None."""

    def __init__(self, compiled: TorchCompiled):
        self._compiled = compiled
        self._torch = compiled._torch
        device = compiled._feeder.device
        self._cuda = device if device.type == "cuda" else None
        self._clone = getattr(compiled._forward, "OVERWRITES_OUTPUTS", False)

    def put(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        placed = self._compiled._feeder(feeds)
        self._sync()
        return placed

    def run(self, placed: list[Any]) -> tuple[Any, ...]:
        out = self._compiled._forward_on(placed)
        if self._clone:  # the next replay overwrites the graph's own buffers
            with self._torch.inference_mode():
                out = tuple(o.clone() for o in out)
        self._sync()
        return out

    def get(self, outputs: tuple[Any, ...]) -> dict[str, np.ndarray]:
        return self._compiled._to_host(outputs)

    def device_seconds(self, placed: list[Any], repeats: int) -> list[float] | None:
        """Each run between two CUDA events, the runs queued back to back (the
        host's launches overlap the device's work, as in a steady stream of
        queries) and read once the device is done."""
        if self._cuda is None:
            return None
        cuda = self._torch.cuda
        stream = cuda.current_stream(self._cuda)  # the one the model's kernels go to
        events = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for start, end in events:
            start.record(stream)
            self._compiled._forward_on(placed)
            end.record(stream)
        self._sync()
        return [start.elapsed_time(end) / 1e3 for start, end in events]

    def memory_peak_bytes(self) -> int | None:
        return None if self._cuda is None else self._torch.cuda.max_memory_allocated(self._cuda)

    def reset_memory_peak(self) -> None:
        if self._cuda is not None:
            self._torch.cuda.reset_peak_memory_stats(self._cuda)

    def _sync(self) -> None:
        if self._cuda is not None:
            self._torch.cuda.synchronize(self._cuda)
