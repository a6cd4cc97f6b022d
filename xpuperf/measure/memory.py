"""Peak resident memory of this process over a stretch of code.

Linux keeps a high-water mark (VmHWM in /proc/self/status) that writing "5" to
/proc/self/clear_refs resets to the current RSS, so the peak of one item is
exact and costs nothing while it runs. Where that is not allowed (other
systems, a locked-down /proc), a thread samples the RSS instead, which can miss
a spike shorter than its period; and where no current RSS can be read at all,
the process's lifetime peak is the best there is. ``method`` says which.
"""
from __future__ import annotations

import resource
import sys
import threading
from pathlib import Path
from types import TracebackType

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_STATM = Path("/proc/self/statm")
SAMPLE_PERIOD_S = 0.005


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.mb`` (MiB) and ``peak.method``
    ("vmhwm", "sampled" or "lifetime")."""

    def __init__(self) -> None:
        self.mb: float | None = None
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    def __enter__(self) -> "PeakRSS":
        try:
            _CLEAR_REFS.write_text("5")
            self.method = "vmhwm"
        except OSError:
            if current_rss_bytes() is None:
                self.method = "lifetime"
            else:
                self.method = "sampled"
                self._thread = threading.Thread(target=self._sample, name="xpuperf-rss", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.method == "vmhwm":
            self.mb = _status_kib("VmHWM") / 1024
        elif self.method == "sampled":
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.mb = self._sampled / 2**20
        else:
            # ru_maxrss is in KiB on Linux, in bytes on macOS.
            scale = 1 if sys.platform == "darwin" else 1024
            self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20

    def _sample(self) -> None:
        while True:
            self._sampled = max(self._sampled, current_rss_bytes() or 0)
            if self._stop.wait(SAMPLE_PERIOD_S):
                self._sampled = max(self._sampled, current_rss_bytes() or 0)
                return


def current_rss_bytes() -> int | None:
    """This process's resident set now, or None where it cannot be read."""
    try:
        pages = int(_STATM.read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise OSError(f"{_STATUS} has no {key}")
