"""GPU backend: a zoo entry's own torch module, compiled for a torch device.

It takes the framework's module from the artifact (``torch_module()``), not the
ONNX export: torch.compile works best on the module itself. TensorFlow and ONNX
entries, which have none, and onnx's op cases are converted from their ONNX
graph by onnx2torch (backends/gpu/onnx_import.py); a node it cannot take fails
the compile as a conversion miss, with the op named and the nodes counted.

Options (--backend-option KEY=VALUE):
  device         cuda (default; cuda:N, or the index in $XPUPERF_DEVICE of a worker
                 bound to one device) or cpu, which runs every path that needs no
                 CUDA on the host CPU (CI's way of testing this backend)
  mode           eager (the module as is), compile (torch.compile with inductor,
                 compiled for every zoo batch size at compile time), cudagraphs (the
                 eager module replayed as one CUDA graph per batch size, so that
                 small batches are not bound by kernel launches; CUDA only).
                 Default: compile on cuda, eager on cpu
  inductor_mode  torch.compile's mode with mode=compile: default, reduce-overhead,
                 max-autotune, max-autotune-no-cudagraphs, ...
  fp8_scales     fp8's activation scales: dynamic (default; each from its activation's
                 largest magnitude, a reduction per call) or static (calibrated at
                 compile on the dataset's first 16 samples, then fixed: no reduction
                 per call, and an activation beyond the calibrated range is clamped
                 to e4m3's +-448)

Precisions: fp32 (TF32 off: IEEE fp32 matmuls and convolutions), tf32 (fp32
storage, TensorFloat-32 matmuls; CUDA capability 8.0+), fp16 and bf16 (the
module converted), fp8 (CUDA capability 8.9+: nn.Linear layers as per-tensor
scaled e4m3 matmuls, backends/gpu/fp8.py, the rest in bf16, and so are the Linear
layers a parent reads itself, such as nn.MultiheadAttention's out_proj; the report
lists the layers that ran fp8 and which activation scaling ran). int8 is declined.
Capabilities, which expected_failures.txt's conditions read: cuda, tf32, bf16, fp8.

Device-resident path (Compiled.resident()): inputs put on the device once,
outputs left there (a CUDA graph's cloned, as its next replay overwrites them),
device times from CUDA events, the memory peak from torch's allocator; on
device=cpu there is no device clock or memory figure, and each says None.

Compile report: nodes and fallback ops as backends/gpu/coverage.py counts them;
with mode=compile, inductor's cache lives in the compile cache entry, so a second
compile is served from it (``cached``), and the kernels inductor generated.
"""
from backends.gpu.backend import GpuBackend

BACKEND = GpuBackend
