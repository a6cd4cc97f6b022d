"""TVM backend: ONNX -> Relax -> tvm.compile (llvm) -> relax.VirtualMachine.

Ops the Relax ONNX frontend cannot convert run on onnxruntime (see backend.py);
TVM itself is imported only when a model is compiled.
"""
from backends.tvm.backend import TvmBackend

BACKEND = TvmBackend
