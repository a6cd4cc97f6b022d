"""NVML's total-energy counters of NVIDIA cards, as an EnergyMeter
(xpuperf.measure.energy does the windows' arithmetic): the GPU backend's bound
card (backends/gpu/energy.py, found by UUID) and the cards of a server the LLM
items measure (--llm-energy-devices, NVML indices).

nvmlDeviceGetTotalEnergyConsumption counts a card's millijoules since the
driver was loaded (Volta and later), 64 bits wide: it does not wrap. Seen on
an H200 (driver 580.159, 2026-12-04): the counter advanced every 100 ms, and one
read took about 4 ms, so a window of T seconds is within about 0.1 / T of its
energy. pynvml (the nvidia-ml-py distribution: pip install 'xpuperf[gpu]') is
imported here only, when a meter is asked for.
"""
from __future__ import annotations

from typing import Any, Mapping

from backends.base import EnergyMeter, EnergyUnavailable

INSTALL_HINT = "pip install nvidia-ml-py (or xpuperf[gpu])"
METHOD = "NVML total energy (nvmlDeviceGetTotalEnergyConsumption)"


class NvmlMeter(EnergyMeter):
    """One counter a card, in ``handles``' order; NVML shuts down on close."""

    def __init__(self, nvml: Any, handles: Mapping[str, Any]):
        self._nvml, self._handles = nvml, tuple(handles.values())
        self.method = f"{METHOD}, {', '.join(handles)}"
        self.wraps_at = (None,) * len(self._handles)

    def read(self) -> tuple[float, ...]:
        return tuple(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3  # mJ -> J
                     for h in self._handles)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def meter(cards: Mapping[str, int | str]) -> NvmlMeter:
    """The meter of ``cards``: each named for the record, found by its NVML
    index (an int) or UUID ("GPU-..."). EnergyUnavailable with the reason where
    NVML is missing, does not start, or a card has no counter."""
    if not cards:
        raise ValueError("an NVML meter needs at least one card")
    try:
        import pynvml
    except ImportError:
        raise EnergyUnavailable(f"NVML's Python binding is not installed: {INSTALL_HINT}"
                                ) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise EnergyUnavailable(f"NVML did not start: {e}") from None
    handles = {}
    try:
        for name, card in cards.items():
            handles[name] = (pynvml.nvmlDeviceGetHandleByUUID(card) if isinstance(card, str)
                             else pynvml.nvmlDeviceGetHandleByIndex(card))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handles[name])  # before Volta: NotSupported
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        raise EnergyUnavailable(f"NVML gives no total energy of {name}: {e}") from None
    return NvmlMeter(pynvml, handles)
