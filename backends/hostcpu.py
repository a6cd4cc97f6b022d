"""What the host CPU offers that a result can depend on, for the backends that
run on it (CPU, OPENVINO, TVM).

Two hosts of the same kind can differ in what they offer: int8 GEMM kernels
accumulate u8 x s8 products in pairs into int16 (VPMADDUBSW, which saturates)
unless the CPU has VNNI, and bf16 runs natively only where the CPU has it. A
backend reads ``capabilities()`` to choose what is right on this host, reports it,
and the expected-failures file keys host-dependent outcomes on the same names
(``if not bf16``; see xpuperf/conformance/expected.py).

One switch makes a capable host behave as a lesser one: oneDNN's own
``ONEDNN_MAX_CPU_ISA`` (AVX2, AVX512_CORE, AVX512_CORE_VNNI, ...). oneDNN, and so
OpenVINO's CPU plugin and TensorFlow, cap their kernels at it; ``capabilities()``
caps what it reports at it too, so that the backends' choices (onnxruntime has no
such switch) and the expectations follow the same host profile. CI runs the
host-dependent items both ways with it.

Energy: ``energy_meter()`` reads the CPU packages' RAPL counters through Linux's
powercap files, where this user may read them.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from backends.base import EnergyMeter, EnergyUnavailable

# Capability -> the /proc/cpuinfo flags that give it (any one of them).
_FLAGS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    # Dot products of u8 x s8 accumulated straight into int32.
    "vnni": ("avx512_vnni", "avx_vnni", "amx_int8"),
    "bf16": ("avx512_bf16", "amx_bf16"),
    "fp16": ("avx512_fp16", "amx_fp16"),
    "amx": ("amx_tile",),
}
# Not a feature of the CPU but of the run: ONEDNN_MAX_CPU_ISA is set, so what a
# kernel does under the cap itself can be keyed apart from what the CPU offers.
CAPPED = "capped"
CAPABILITIES = tuple(_FLAGS)

# oneDNN's ONEDNN_MAX_CPU_ISA values -> the capabilities a host capped there keeps.
_ISA_CAPS: dict[str, frozenset[str]] = {
    "SSE41": frozenset(),
    "AVX": frozenset(),
    "AVX2": frozenset({"avx2"}),
    "AVX2_VNNI": frozenset({"avx2", "vnni"}),
    "AVX2_VNNI_2": frozenset({"avx2", "vnni"}),
    "AVX512_CORE": frozenset({"avx2", "avx512"}),
    "AVX512_CORE_VNNI": frozenset({"avx2", "avx512", "vnni"}),
    "AVX512_CORE_BF16": frozenset({"avx2", "avx512", "vnni", "bf16"}),
    "AVX10_1_512": frozenset({"avx2", "avx512", "vnni", "bf16", "fp16"}),
    "AVX512_CORE_FP16": frozenset({"avx2", "avx512", "vnni", "bf16", "fp16"}),
    "AVX10_1_512_AMX": frozenset(CAPABILITIES) - {"fp16"},
    "AVX512_CORE_AMX": frozenset(CAPABILITIES) - {"fp16"},
    "AVX10_1_512_AMX_FP16": frozenset(CAPABILITIES),
    "AVX512_CORE_AMX_FP16": frozenset(CAPABILITIES),
    "ALL": frozenset(CAPABILITIES),
    "DEFAULT": frozenset(CAPABILITIES),
}
CAP_VARIABLE = "ONEDNN_MAX_CPU_ISA"


class HostCpuError(ValueError):
    """The host profile asked for is not one this module knows."""


def _cpuinfo(*keys: str) -> str:
    """The first processor's first of ``keys`` in /proc/cpuinfo; '' where there
    is none (not Linux, another architecture's names)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return ""


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The flags of the first processor; empty where /proc/cpuinfo has none (not
    Linux, not x86), which then offers none of the capabilities."""
    return frozenset(_cpuinfo("flags", "Features").split())


@functools.lru_cache(maxsize=1)
def model() -> str:
    """This host's CPU by name, for the records beside a CPU's figures ('AMD EPYC
    7R13 Processor'): /proc/cpuinfo's, else the platform's word ('x86_64')."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cap() -> str:
    """The host profile in force: ONEDNN_MAX_CPU_ISA's value, or '' for the host as it is."""
    value = os.environ.get(CAP_VARIABLE, "").strip().upper()
    if value and value not in _ISA_CAPS:
        raise HostCpuError(f"{CAP_VARIABLE}={value!r} is not a oneDNN ISA this suite knows; "
                           f"use one of {', '.join(_ISA_CAPS)}")
    return value


def capabilities(flags: frozenset[str] | None = None, isa_cap: str | None = None) -> dict[str, bool]:
    """Each capability and whether this host offers it, under the host profile
    (``isa_cap``, default ONEDNN_MAX_CPU_ISA). ``flags`` default to this CPU's."""
    flags = _cpu_flags() if flags is None else flags
    isa_cap = cap() if isa_cap is None else isa_cap
    allowed = _ISA_CAPS[isa_cap] if isa_cap else frozenset(CAPABILITIES)
    return {**{name: name in allowed and any(f in flags for f in wanted)
               for name, wanted in _FLAGS.items()}, CAPPED: bool(isa_cap)}


def describe() -> str:
    """This host's capabilities in one line for reports: 'avx2 avx512 vnni bf16',
    or 'avx2 (capped at AVX2 by ONEDNN_MAX_CPU_ISA)'."""
    offered = " ".join(name for name, has in capabilities().items()
                       if has and name != CAPPED) or "none"
    profile = cap()
    return f"{offered} (capped at {profile} by {CAP_VARIABLE})" if profile else offered


RAPL_ROOT = Path("/sys/class/powercap")


class RaplMeter(EnergyMeter):
    """The RAPL energy counters of the CPU packages (powercap's intel-rapl:N
    zones, AMD's too): each counts microjoules of its whole package, every
    process on it, and wraps at its max_energy_range_uj."""

    def __init__(self, zones: list[Path]):
        self._files = [z / "energy_uj" for z in zones]
        self.wraps_at = tuple(int((z / "max_energy_range_uj").read_text()) / 1e6 for z in zones)
        self.method = (f"RAPL package energy ({', '.join(z.name for z in zones)} under "
                       f"{zones[0].parent}): the whole CPU package(s), every process on them, "
                       "DRAM not included")

    def read(self) -> tuple[float, ...]:
        return tuple(int(f.read_text()) / 1e6 for f in self._files)


def energy_meter(root: Path | None = None) -> RaplMeter:
    """This host's CPU packages' meter (``root``: RAPL_ROOT); EnergyUnavailable
    saying why where there is none or this user cannot read it."""
    root = RAPL_ROOT if root is None else root
    zones = sorted(z for z in root.glob("intel-rapl:*")
                   if z.name.count(":") == 1 and _zone_name(z).startswith("package"))
    if not zones:
        raise EnergyUnavailable(
            f"no RAPL package zone under {root}: not an x86 Linux host, the powercap "
            "driver (intel_rapl) is not loaded, or a container or VM hides it")
    try:
        meter = RaplMeter(zones)
        meter.read()
    except PermissionError as e:
        raise EnergyUnavailable(
            f"{e.filename} is not readable by this user (root only since Linux 5.10, "
            "against the PLATYPUS side channel): run as root or grant read access to the "
            "energy_uj files") from None
    except (OSError, ValueError) as e:
        raise EnergyUnavailable(f"RAPL under {root} cannot be read: {type(e).__name__}: {e}"
                                ) from None
    return meter


def _zone_name(zone: Path) -> str:
    """A zone's name (package-0, psys, ...); psys, the platform's, overlaps the
    packages. A zone whose name cannot be read is taken as a package."""
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return "package"
