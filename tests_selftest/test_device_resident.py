"""Device-resident measurement (xpuperf.measure.resident, backends.base.Resident): the
worker's figures from a fake device whose clock and copies are known, and whole
sessions whose records carry them (GPU at device=cpu) or say why not (CPU)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from backends.base import Resident
from xpuperf.measure import loadgen, resident
from tests_selftest.sessions import FAST_TIERS, run_session, tiny_zoo

BATCH = 4
RUN_S = 0.002
DEVICE_S = [0.001 * (k + 1) for k in range(resident.DEVICE_RUNS)]  # 1 .. 20 ms
COPY_S = 0.004
SETTINGS = loadgen.RunSettings(min_duration_s=0.05, min_queries=10, warmup_queries=1, windows=1)


class FakeDevice(Resident):
    """Placed batches are tagged objects (run refuses host arrays); each run
    sleeps RUN_S, each copy COPY_S; the device's clock reports DEVICE_S."""

    def __init__(self, clock: bool = True):
        self.clock, self.puts, self.ran = clock, 0, set()

    def put(self, feeds: Mapping[str, np.ndarray]) -> tuple[str, int]:
        self.puts += 1
        time.sleep(COPY_S)
        return ("placed", id(feeds))

    def run(self, placed: Any) -> tuple[str, int]:
        assert isinstance(placed, tuple) and placed[0] == "placed", "run was handed host feeds"
        self.ran.add(placed[1])
        time.sleep(RUN_S)
        return ("outputs", placed[1])

    def get(self, outputs: Any) -> dict[str, np.ndarray]:
        time.sleep(COPY_S)
        return {"y": np.zeros((BATCH, 1000), np.float32)}

    def device_seconds(self, placed: Any, repeats: int) -> list[float] | None:
        assert repeats == len(DEVICE_S)
        return list(DEVICE_S) if self.clock else None


def _batches() -> list[dict[str, np.ndarray]]:
    return [{"x": np.full((BATCH, 3, 32, 32), k, np.float32)} for k in range(3)]


def test_figures_come_from_placed_batches_the_device_clock_and_the_copies() -> None:
    device, batches = FakeDevice(), _batches()
    figures = resident.measure(device, batches, BATCH, SETTINGS)
    # Every batch placed once before timing, then COPY_RUNS puts for the rate.
    assert device.puts == len(batches) + resident.COPY_RUNS
    assert device.ran == {id(b) for b in batches}  # the queries rotate over them all
    # Each query sleeps RUN_S: the QPS is at most BATCH / RUN_S, and not far below.
    assert BATCH / (4 * RUN_S) < figures["qps"] <= BATCH / RUN_S
    assert figures["queries"] >= SETTINGS.min_queries
    assert RUN_S * 1e3 <= figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]
    # The device's own times, not the host's: 1..20 ms -> p50 10.5 ms, p90 18.1 ms.
    assert figures["device_ms"] == pytest.approx({"p50": 10.5, "p90": 18.1})
    assert figures["device_qps"] == pytest.approx(BATCH / 0.0105)
    assert figures["device_time_source"] == f"device events, {resident.DEVICE_RUNS} runs"
    # A batch of 4x3x32x32 fp32 in, 4x1000 fp32 out, each copy taking at least COPY_S.
    for key, nbytes in (("h2d_bytes_per_s", BATCH * 3 * 32 * 32 * 4),
                        ("d2h_bytes_per_s", BATCH * 1000 * 4)):
        assert nbytes / (4 * COPY_S) < figures[key] <= nbytes / COPY_S, key


def test_a_device_without_a_clock_says_so() -> None:
    figures = resident.measure(FakeDevice(clock=False), _batches(), BATCH, SETTINGS)
    assert figures["device_ms"] is None and figures["device_qps"] is None
    assert figures["device_time_source"].startswith("none:")
    assert figures["qps"] > 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_zoo(tmp_path_factory.mktemp("tiny"), tiers=FAST_TIERS)


def _throughput(folder: Path, hardware: str, *options: str) -> tuple[dict, dict]:
    """The offline item's entry in result-fp32.json and its extra_info in benchmark.json."""
    done = run_session(folder, hardware, *options, "-k", "test_throughput")
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads((folder / hardware / "tiny-bert" / "result-fp32.json").read_text())
    bench = json.loads((folder / hardware / "benchmark.json").read_text())
    [point] = result["Performance"]
    [item] = bench["benchmarks"]
    return point, item["extra_info"]


def test_a_gpu_item_records_device_resident_figures(tiny: Path) -> None:
    pytest.importorskip("torch")
    point, extra = _throughput(tiny, "GPU", "--backend-option", "device=cpu")
    figures = extra["device_resident"]
    assert figures["qps"] > 0 and figures["queries"] >= 3
    assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]
    assert figures["h2d_bytes_per_s"] > 0 and figures["d2h_bytes_per_s"] > 0
    # The CPU has no device clock and no device memory: said, not faked from the host.
    assert figures["device_ms"] is None and figures["device_time_source"].startswith("none:")
    assert "device_memory_peak_mb" not in extra and extra["peak_rss_mb"] > 0
    assert point["Device Resident QPS"] == figures["qps"] and point["QPS"] == extra["qps"]
    assert "Device Resident Skipped" not in point


def test_a_host_backend_records_why_it_has_none(tiny: Path) -> None:
    point, extra = _throughput(tiny, "CPU")
    assert extra["device_resident"] == {"skipped": point["Device Resident Skipped"]}
    assert "Compiled.resident() is None" in point["Device Resident Skipped"]
    assert point["Device Resident QPS"] is None and point["QPS"] > 0
    html = (tiny / "CPU" / "report.html").read_text()
    assert "shows no device-resident figures, unless it says: CPU offers no device-resident path" in html
