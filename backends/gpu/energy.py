"""The GPU backend's energy meter: NVML's total-energy counter of the bound card
(xpuperf/measure/nvml.py). The card is found by its UUID, not by its CUDA
index: CUDA orders devices fastest first and through CUDA_VISIBLE_DEVICES, NVML
by PCI bus, so the indices can differ. Seen on an H200 (driver 580.159,
2026-12-04): torch's device UUID found the card through NVML.
"""
from __future__ import annotations

from typing import Any

from xpuperf.measure import nvml


def meter(device: Any) -> nvml.NvmlMeter:
    """The meter of torch CUDA ``device`` (with its index); EnergyUnavailable
    with the reason where NVML is missing or the card has no counter."""
    import torch

    uuid = str(torch.cuda.get_device_properties(device).uuid)
    uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    return nvml.meter({f"{device} ({uuid})": uuid})
