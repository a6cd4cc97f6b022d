"""TVM backend: ONNX -> Relax -> tvm.compile (llvm) -> relax.VirtualMachine, one
static executable per batch size, kept in the engine's compile cache.

Ops the Relax ONNX frontend cannot convert run on onnxruntime (see backend.py);
TVM itself is imported only when a model is compiled.
"""
from backends.tvm.backend import TvmBackend

BACKEND = TvmBackend
