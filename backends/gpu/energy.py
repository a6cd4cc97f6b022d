"""The GPU backend's energy meter: NVML's total-energy counter of the bound card.

nvmlDeviceGetTotalEnergyConsumption counts the card's millijoules since the
driver was loaded (Volta and later), 64 bits wide: it does not wrap. The card is
found by its UUID, not by its CUDA index: CUDA orders devices fastest first and
through CUDA_VISIBLE_DEVICES, NVML by PCI bus, so the indices can differ.
pynvml (the nvidia-ml-py distribution: pip install 'xpuperf[gpu]') is imported
here only, when a meter is asked for.

Seen on an H200 (driver 580.159, 2026-12-04): torch's device UUID found the card
through NVML; the counter advanced every 100 ms, and one read took about 4 ms.
So a window of T seconds is within about 0.1 / T of its energy (the full tier's
10 s windows: 1 %; the smoke tier's 0.3 s: a third), and the reads sit outside
every timed query (after the warm-up, after the last query).
"""
from __future__ import annotations

from typing import Any

from backends.base import EnergyMeter, EnergyUnavailable

INSTALL_HINT = "pip install nvidia-ml-py (or xpuperf[gpu])"


class NvmlMeter(EnergyMeter):
    wraps_at = (None,)

    def __init__(self, nvml: Any, handle: Any, device: str):
        self._nvml, self._handle = nvml, handle
        self.method = f"NVML total energy (nvmlDeviceGetTotalEnergyConsumption), {device}"

    def read(self) -> tuple[float, ...]:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3,)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def meter(device: Any) -> NvmlMeter:
    """The meter of torch CUDA ``device`` (with its index); EnergyUnavailable
    with the reason where NVML is missing or the card has no counter."""
    import torch

    try:
        import pynvml
    except ImportError:
        raise EnergyUnavailable(f"NVML's Python binding is not installed: {INSTALL_HINT}"
                                ) from None
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise EnergyUnavailable(f"NVML did not start: {e}") from None
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        found = NvmlMeter(pynvml, handle, f"{device} ({uuid})")
        found.read()  # a card before Volta answers NotSupported here
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        raise EnergyUnavailable(f"NVML gives no total energy of {device} ({uuid}): {e}"
                                ) from None
    return found
