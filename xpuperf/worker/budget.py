"""How many bytes of a model's outputs a worker may keep for the parent.

The accuracy run keeps the backend's outputs for the whole dataset and sends
them to the parent, and at its peak holds about COPIES times their size (the
batches, their concatenation, the .npy encoding, the pipe, the parent's read and
its arrays); the accuracy audit keeps the outputs of up to 16 queries more. A
model with large outputs would take the host's memory, and every process on
it, with them: past the budget the run is refused with the size and the fix,
and the audit logs fewer queries.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "XPUPERF_MAX_OUTPUT_BYTES"
COPIES = 6


class OutputsTooLarge(RuntimeError):
    """The outputs would not fit the budget; the message says how big and what to do."""


def max_output_bytes() -> int:
    """$XPUPERF_MAX_OUTPUT_BYTES, else the host's available memory over COPIES."""
    text = os.environ.get(ENV, "")
    if text:
        try:
            return int(float(text))
        except ValueError:
            raise ValueError(f"${ENV}={text!r}: give a number of bytes, e.g. {ENV}=4e9") from None
    available = _available_bytes()
    return sys.maxsize if available is None else available // COPIES


def _available_bytes() -> int | None:
    """Memory the host can give without swapping (Linux's MemAvailable, else the
    free pages), or None where neither can be read (no budget then)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check(model: str, batch_bytes: int, batches: int, batch_size: int, limit: int) -> None:
    """OutputsTooLarge when ``batches`` batches of ``batch_bytes`` exceed ``limit``."""
    total = batch_bytes * batches
    if total <= limit:
        return
    raise OutputsTooLarge(
        f"{model}: its outputs for the dataset take {_size(total)} ({_size(batch_bytes)} per "
        f"batch of {batch_size}, {batches} batches), over the {_size(limit)} the worker may keep "
        f"(about {COPIES}x that is held while they are sent to the parent): evaluate fewer "
        f"samples (the model's dataset_options in zoo.yaml) or set ${ENV} to the bytes to "
        "allow, on a host with the memory for it")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
