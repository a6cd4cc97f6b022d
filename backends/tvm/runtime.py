"""What runs a TVM-compiled model: its parts in order, each a Relax VM of TVM's
own kernels or an onnxruntime session of the ops TVM could not take, one list of
parts per compiled batch size; and the loading of a part from the compile cache.
The compile that makes them is backends/tvm/backend.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from backends.base import Compiled, CompileError, CompileReport


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):
        return value.numpy()
    # Shape outputs come back as a runtime shape tuple, scalars as plain numbers.
    return np.asarray(list(value) if isinstance(value, Iterable) else value, dtype=np.int64)


def load_vm(so_path: Path) -> Any:
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.runtime.load_module(str(so_path)), tvm.cpu())


def ort_session(path: Path, ops: list[str]) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise CompileError(
            f"TVM: ops {', '.join(ops)} need the onnxruntime fallback, which is not "
            "installed (pip install onnxruntime, or fallback=none)", ops) from e
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own unexported exception types
        raise CompileError(f"TVM: the onnxruntime fallback rejected ops "
                           f"{', '.join(ops)}: {e}", ops) from e


class TvmPart:
    def __init__(self, vm: Any, inputs: list[str], outputs: list[str]):
        import tvm

        self._main = vm["main"]
        self._tensor = tvm.runtime.tensor
        self.inputs, self.outputs = inputs, outputs

    def run(self, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._main(*(self._tensor(np.ascontiguousarray(env[n])) for n in self.inputs))
        values = [result] if len(self.outputs) == 1 else list(result)
        return {name: to_numpy(v) for name, v in zip(self.outputs, values)}


class OrtPart:
    def __init__(self, session: Any, inputs: list[str], outputs: list[str]):
        self._session = session
        self.inputs, self.outputs = inputs, outputs

    def run(self, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.outputs, {n: env[n] for n in self.inputs})
        return dict(zip(self.outputs, values))


def load_part(directory: Path, entry: Mapping[str, Any]) -> TvmPart | OrtPart:
    path = directory / entry["file"]
    # dlopen goes by file name: a truncated library of a name this process already
    # loaded would be "loaded" without being read, so check the size first.
    if path.stat().st_size != entry["bytes"]:
        raise ValueError(f"{path} has {path.stat().st_size} bytes, not {entry['bytes']}")
    if entry["engine"] == "tvm":
        return TvmPart(load_vm(path), entry["inputs"], entry["outputs"])
    return OrtPart(ort_session(path, []), entry["inputs"], entry["outputs"])


class TvmCompiled(Compiled):
    """One executable (a list of parts run in order) per compiled batch size, or a
    single one under the key None that takes any feed."""

    def __init__(self, executables: Mapping[int | None, list[TvmPart | OrtPart]],
                 batch_input: str | None, input_names: tuple[str, ...], output_names: list[str],
                 report: CompileReport):
        self._executables = dict(executables)
        self._batch_input = batch_input
        self._outputs = output_names
        self.report = report
        # What the parts read that no earlier part produced: the inputs to feed. The
        # model's other inputs (never read) are accepted and ignored.
        self._needed: set[str] = set()
        produced: set[str] = set()
        for part in next(iter(self._executables.values()), []):
            self._needed.update(set(part.inputs) - produced)
            produced.update(part.outputs)
        self._known = self._needed | set(input_names)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._executables:
            raise RuntimeError("TVM: run() on a compiled model after its close()")
        unknown, missing = sorted(feeds.keys() - self._known), sorted(self._needed - feeds.keys())
        if unknown or missing:
            raise ValueError(f"TVM: unknown feed(s) {', '.join(unknown) or 'none'}, missing "
                             f"input(s) {', '.join(missing) or 'none'} (the model takes "
                             f"{', '.join(sorted(self._known))}; given {', '.join(feeds)})")
        batch = None if self._batch_input is None else len(feeds[self._batch_input])
        parts = self._executables.get(batch)
        if parts is None:
            compiled = ", ".join(str(b) for b in sorted(self._executables))
            raise ValueError(f"TVM: input {self._batch_input!r} has batch size {batch}, "
                             f"but the model was compiled for batch sizes {compiled} only")
        env: dict[str, np.ndarray] = dict(feeds)
        for part in parts:
            env.update(part.run(env))
        return {name: env[name] for name in self._outputs}

    def close(self) -> None:
        self._executables = {}
