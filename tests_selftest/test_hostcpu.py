"""What the host offers (backends/hostcpu.py), the int8 scheme chosen from it, and
that the choice is right on a host without VNNI: onnxruntime's real kernels are
run on such a host, this one where it offers nothing beyond AVX2, else qemu's
AVX2 CPU model (no AVX-512, no VNNI), where it is installed (CI installs it;
Debian's qemu-user)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from backends import hostcpu

# /proc/cpuinfo flags of the two kinds of host: an AMD EPYC with AVX2 and FMA only,
# and one with AVX-512, VNNI and bf16 (the kind CI was first run on).
AVX2_HOST = frozenset("sse4_2 avx fma f16c avx2 bmi2".split())
AVX512_HOST = AVX2_HOST | frozenset("avx512f avx512bw avx512vl avx512_vnni avx512_bf16".split())


def test_the_host_cpu_is_named_as_proc_cpuinfo_names_it() -> None:
    """A CPU's figures are quoted with the CPU (an EPYC, a Xeon: on two 2-core
    hosts one benchmark read 4.4 % and 11.2 %), not the architecture's word."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.split(":", 1)[0].strip() == "model name"]
    if not names:
        pytest.skip("/proc/cpuinfo names no model here (not Linux on x86)")
    from backends.cpu import CpuBackend

    assert hostcpu.model() == names[0]
    assert CpuBackend().info()["device"] == names[0]


def test_capabilities_follow_the_flags_and_the_cap() -> None:
    assert hostcpu.capabilities(AVX2_HOST, "") == {
        "avx2": True, "avx512": False, "vnni": False, "bf16": False, "fp16": False,
        "amx": False, "capped": False}
    full = hostcpu.capabilities(AVX512_HOST, "")
    assert full["vnni"] and full["bf16"] and not full["amx"]
    # A cap takes away what the level lacks, never adds what the CPU lacks.
    assert hostcpu.capabilities(AVX512_HOST, "AVX2") == {**hostcpu.capabilities(AVX2_HOST, ""),
                                                        "capped": True}
    assert hostcpu.capabilities(AVX512_HOST, "AVX512_CORE_VNNI")["vnni"]
    assert not hostcpu.capabilities(AVX512_HOST, "AVX512_CORE_VNNI")["bf16"]
    assert not hostcpu.capabilities(AVX2_HOST, "ALL")["vnni"]


def test_an_unknown_cap_names_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX3")
    with pytest.raises(hostcpu.HostCpuError, match=r"ONEDNN_MAX_CPU_ISA='AVX3' .* AVX2, "):
        hostcpu.capabilities()


# Compiled with each int8 scheme and run on the input the test wrote; prints the outputs.
_RUN_BOTH_SCHEMES = """
import json, sys
from pathlib import Path
import numpy as np
from backends.cpu import CpuBackend
from tests_selftest.artifacts import FileArtifact

x = np.load(sys.argv[2])
artifact = FileArtifact(Path(sys.argv[1]))
# Calibrated on the very rows it runs: no clipping, only the kernels differ.
artifact.calibration_feeds = lambda count: [{"x": row[None]} for row in x]
out = {}
for scheme in ("s8s8", "u8u8", "s8s8-w7"):
    compiled = CpuBackend().compile(artifact, "int8", (len(x),), {"int8_scheme": scheme})
    out[scheme] = compiled.run({"x": x})["y"].tolist()
print(json.dumps(out))
"""


def _int8_outputs(model: Path, x: Path, *prefix: str) -> dict[str, np.ndarray]:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([*prefix, sys.executable, "-c", _RUN_BOTH_SCHEMES, str(model), str(x)],
                          capture_output=True, text=True, cwd=root, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: np.array(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


def _relative_error(out: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(out - reference).max() / np.abs(reference).max())


def test_u8u8_is_exact_where_u8_s8_pairs_saturate(tmp_path: Path) -> None:
    """On an AVX2 CPU onnxruntime takes its non-VNNI kernels: s8s8 saturates
    there, u8u8 and 7-bit weights give the bits they give on this host, whatever
    this host has. A host with more than AVX2 runs the AVX2 side under qemu's AVX2
    CPU model; a host with nothing beyond AVX2 is such a CPU, natively (qemu
    would repeat its kernels, 50 s slower)."""
    host = hostcpu.capabilities(isa_cap="")
    beyond_avx2 = host["avx512"] or host["vnni"] or host["amx"]
    if beyond_avx2 and shutil.which("qemu-x86_64") is None:
        pytest.skip("needs qemu-x86_64 (Debian's qemu-user) to run as a host without VNNI")
    # A MatMul whose u8 x s8 pair sums overflow int16: all-positive activations at
    # the top of their range against equal weights, VPMADDUBSW's worst case.
    w = np.full((16, 4), 0.5, np.float32) + np.linspace(0, 0.01, 64, dtype=np.float32).reshape(16, 4)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "sat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "sat.onnx"))
    x = np.abs(np.random.default_rng(1).standard_normal((8, 16))).astype(np.float32) + 1.5
    np.save(tmp_path / "x.npy", x)

    native = _int8_outputs(tmp_path / "sat.onnx", tmp_path / "x.npy")
    emulated = _int8_outputs(tmp_path / "sat.onnx", tmp_path / "x.npy", "qemu-x86_64", "-cpu",
                             "max") if beyond_avx2 else native
    reference = x @ w
    assert _relative_error(emulated["s8s8"], reference) > 0.1  # the saturating kernel
    for exact in ("u8u8", "s8s8-w7"):
        assert _relative_error(emulated[exact], reference) < 0.02
        np.testing.assert_array_equal(emulated[exact], native[exact])
    if host["vnni"]:
        assert _relative_error(native["s8s8"], reference) < 0.02  # VNNI: no int16 pairs
