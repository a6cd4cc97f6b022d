"""A fake CUDA device on a CPU-only torch, to catch CUDA-only breakage without a GPU.

Under torch's FakeTensorMode a tensor has a device, a shape and a dtype but no
data: ``device="cuda:0"`` tensors can be made on a torch built without CUDA, and
an op that mixes one with a CPU tensor raises FakeTensorDeviceMismatchError as
the real device would (a tensor made inside forward without a device, a buffer
or a plain tensor attribute ``.to()`` did not move, a host input not placed).
0-dim CPU tensors mix with CUDA ones, as on a real device.

What a CPU-only torch lacks for that, this module stands in for, all in one place:

* CUDA's device guard, which torch's C++ bindings (indexing, ``copy_``,
  ``.cuda()``) enter for a CUDA tensor: a no-op one (torch's own
  NoOpDeviceGuardImpl), registered from a three-line C++ library compiled once per
  torch version with the host's C++ compiler (the one inductor needs anyway);
* the dtype check of CUDA's matmuls and convolutions (``ONE_DTYPE_OPS``), which
  torch's shape functions for fake tensors do not make: an input cast missed
  raises DtypeMismatch;
* _grouped_mm in dtypes other than bf16 (a mixture of experts at fp16), which
  CUDA's op takes and torch's shape function refuses;
* the ``torch.cuda`` runtime queries the GPU backend makes (``FAKE_QUERIES``):
  one device of ``capability`` named NAME, with bf16; synchronize and
  empty_cache do nothing; streams, events and CUDA graphs are stand-ins whose
  capture runs the forward once, eagerly, and whose replay does nothing.

What it cannot check: kernels (no op runs: a missing CUDA kernel, a wrong
result, an fp8 matmul's numerics), CUDA graphs' capture rules (a host sync or an
allocation inside a capture), inductor (mode=compile generates kernels, which
need a real device), anything that reads values (``.item()``, ``.tolist()``,
``bool(tensor)`` raise DataDependentOutputException: calibration and token
generation are out of reach), timings and memory figures (each is 0), and more
than one device.
"""
from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import torch
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorDeviceMismatchError,
                                           FakeTensorMode, unset_fake_temporarily)

CAPABILITY = (9, 0)  # an H100 or H200: tf32, bf16 and fp8 all offered
NAME = "fake CUDA device (no kernels run)"
# What says a tensor was on the wrong device.
DEVICE_ERRORS = (FakeTensorDeviceMismatchError,)

_GUARD_SOURCE = """\
#include <c10/core/impl/DeviceGuardImplInterface.h>
// A CPU-only torch registers no CUDA device guard: register torch's no-op one.
C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::NoOpDeviceGuardImpl<c10::DeviceType::CUDA>);
"""
_guard_loaded = False


class FakeCudaUnavailable(RuntimeError):
    """The fake cannot be set up here; the message says why and what to install."""


def register_device_guard() -> None:
    """Compile (once per torch build, cached in the temporary folder) and load
    the no-op CUDA device guard; a no-op where torch has its own."""
    global _guard_loaded
    if _guard_loaded or torch.backends.cuda.is_built():
        return
    import ctypes

    root = Path(torch.__file__).parent
    key = hashlib.sha256((torch.__version__ + str(root) + _GUARD_SOURCE).encode()).hexdigest()[:16]
    library = Path(tempfile.gettempdir()) / f"xpuperf-fake-cuda-guard-{key}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory() as tmp:
            source, built = Path(tmp) / "guard.cpp", Path(tmp) / "guard.so"
            source.write_text(_GUARD_SOURCE)
            command = ["c++", "-shared", "-fPIC", "-std=c++17", f"-I{root / 'include'}",
                       str(source), f"-L{root / 'lib'}", "-lc10", f"-Wl,-rpath,{root / 'lib'}",
                       "-o", str(built)]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
            except FileNotFoundError:
                raise FakeCudaUnavailable("the fake CUDA device needs a C++ compiler (c++) to "
                                          "register a no-op CUDA device guard; install g++")
            except subprocess.CalledProcessError as e:
                raise FakeCudaUnavailable(f"compiling the fake CUDA device guard failed: "
                                          f"{e.stderr.strip()[-600:]}") from None
            built.replace(library)  # whole or not at all: another process may be reading
    ctypes.CDLL(str(library))
    _guard_loaded = True


_aten = torch.ops.aten
# Ops whose CUDA kernels refuse floating inputs of two dtypes (an fp32 input
# against fp16 weights: an input cast missed), where the fake's shape functions
# let them pass. A Linear decomposes to addmm or mm; a convolution is one op.
ONE_DTYPE_OPS = frozenset({_aten.mm.default, _aten.addmm.default, _aten.bmm.default,
                           _aten.baddbmm.default, _aten.convolution.default})


class DtypeMismatch(RuntimeError):
    """An op given floating tensors of different dtypes, which CUDA refuses."""


class _Mode(FakeTensorMode):
    # torch asks the CUDA runtime whether a device is there to decide whether a
    # tensor may be materialized on it; the answer here is always no.
    avoid_device_init = property(lambda self: True)

    def dispatch(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in ONE_DTYPE_OPS:
            dtypes = {a.dtype for a in (*args, *(kwargs or {}).values())
                      if isinstance(a, torch.Tensor) and a.is_floating_point()}
            if len(dtypes) > 1:
                raise DtypeMismatch(f"{func}: expected one dtype, got "
                                    f"{', '.join(sorted(map(str, dtypes)))} (an input not cast "
                                    "to the model's dtype?)")
        to = (kwargs or {}).get("device")
        moves = isinstance(to, torch.device) and to.type == "cuda"
        for a in (*args, *(kwargs or {}).values()):
            # A small tensor made from data keeps its values for constant
            # propagation, which computes for real: not on a device that is not
            # there (torch skips it for _to_copy, not for inference mode's to()).
            if isinstance(a, FakeTensor) and a.constant is not None and (
                    moves or a.device.type == "cuda"):
                a.constant = None
        if func is _aten._grouped_mm.default and args[0].dtype != torch.bfloat16:
            return self._grouped_mm(types, args, kwargs or {})
        return super().dispatch(func, types, args, kwargs or {})

    def _grouped_mm(self, types: Any, args: Any, kwargs: Any) -> Any:
        """torch's shape function for _grouped_mm takes bf16 only, as CUDA's fast
        kernel does; CUDA's op falls back to a loop of matmuls for other dtypes
        (GroupedBlas.cpp, torch 2.9+), so the fake takes them too: the shapes of
        the bf16 op, in the input's dtype."""
        dtype = args[0].dtype
        cast = [a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.is_floating_point()
                else a for a in args]
        out = super().dispatch(_aten._grouped_mm.default, types, cast, kwargs)
        return out.to(kwargs.get("out_dtype") or dtype)


class _Stream:
    def __init__(self, device: Any = None):
        self.device = device

    def wait_stream(self, other: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _Event:
    def __init__(self, enable_timing: bool = False):
        self.enable_timing = enable_timing

    def record(self, stream: Any = None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: "_Event") -> float:
        return 0.0


class _Graph:
    """A CUDA graph whose capture ran its forward once and whose replay does
    nothing (there are no values to recompute)."""

    def replay(self) -> None:
        pass

    def reset(self) -> None:
        pass


def _query_table(capability: tuple[int, int]) -> dict[str, Any]:
    def device_index(device: Any = None) -> int:
        index = getattr(device, "index", device)
        if index not in (None, 0):
            raise AssertionError(f"the fake has one CUDA device; asked for {device}")
        return 0

    return {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "get_device_capability": lambda device=None: (device_index(device), capability)[1],
        "get_device_name": lambda device=None: (device_index(device), NAME)[1],
        "is_bf16_supported": lambda *a, **k: capability >= (8, 0),
        "synchronize": lambda device=None: None,
        "empty_cache": lambda: None,
        "max_memory_allocated": lambda device=None: 0,
        "reset_peak_memory_stats": lambda device=None: None,
        "Stream": _Stream,
        "current_stream": lambda device=None: _Stream(device),
        "stream": lambda stream: contextlib.nullcontext(),
        "Event": _Event,
        "CUDAGraph": _Graph,
        "graph": lambda graph, **kwargs: contextlib.nullcontext(),
    }


# The torch.cuda names the fake answers (the GPU backend's runtime queries).
FAKE_QUERIES = tuple(_query_table(CAPABILITY))


class HostBuilt:
    """``artifact`` with its framework modules built on the host, outside the
    fake (real CPU tensors, as a backend gets them from a real artifact); the
    rest is the artifact's own."""

    def __init__(self, artifact: Any):
        self._artifact = artifact

    def __getattr__(self, name: str) -> Any:
        return getattr(self._artifact, name)

    def torch_module(self) -> Any:
        with unset_fake_temporarily():
            return self._artifact.torch_module()

    def causal_lm(self) -> Any:
        with unset_fake_temporarily():
            return self._artifact.causal_lm()


@contextlib.contextmanager
def fake_cuda(capability: tuple[int, int] = CAPABILITY) -> Iterator[FakeTensorMode]:
    """Within: one fake CUDA device of ``capability``; every tensor made is a fake
    one (real tensors met are taken as fake CPU ones)."""
    register_device_guard()
    with mock.patch.multiple(torch.cuda, **_query_table(capability)), \
            _Mode(allow_non_fake_inputs=True) as mode:
        yield mode
