"""Energy (xpuperf.measure.energy, Backend.energy_meter): the arithmetic, the
readers (NVML through a fake pynvml, RAPL through a fake powercap folder), the
window around loadgen's measured part only, and whole sessions whose records
carry the figures, or say why not, and whose items never fail for a meter."""
from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest

from backends import hostcpu
from backends.base import Backend, EnergyMeter, EnergyUnavailable
from backends.cpu import CpuBackend
from xpuperf.measure import energy, loadgen
from tests_selftest.fakes import METER_WATTS
from tests_selftest.sessions import FAST_TIERS, run_session, tiny_zoo


# --------------------------------------------------------------------------- arithmetic

def test_joules_add_up_over_counters_and_a_wrapped_counter_counts_its_range() -> None:
    # Two packages: one advances 5 J, one wraps at 100 J from 98 to 3 (5 J).
    assert energy.joules_between((10.0, 98.0), (15.0, 3.0), (100.0, 100.0)) == \
        pytest.approx(10.0)
    with pytest.raises(energy.EnergyError, match="went backwards .* does not wrap"):
        energy.joules_between((10.0,), (9.0,), (None,))
    with pytest.raises(energy.EnergyError, match="changed its counters"):
        energy.joules_between((1.0, 2.0), (3.0,), (None, None))


def test_figures_are_watts_and_joules_per_unit() -> None:
    got = energy.figures(30.0, 2.0, "m", {"query": 10, "sample": 40})
    assert got == {"joules": 30.0, "seconds": 2.0, "avg_watts": 15.0, "j_per_query": 3.0,
                   "j_per_sample": 0.75, "method": "m"}
    with pytest.raises(energy.EnergyError, match="did not advance over the 0.5 s window"):
        energy.figures(0.0, 0.5, "m", {"query": 1})


class _Counter(EnergyMeter):
    """Advances ``step`` joules per read; ``fail_on``: the read that raises."""

    method = "test counter"
    wraps_at = (None,)

    def __init__(self, step: float = 2.0, fail_on: int = 0):
        self.step, self.fail_on, self.reads = step, fail_on, 0

    def read(self) -> tuple[float, ...]:
        self.reads += 1
        if self.reads == self.fail_on:
            raise OSError("gone")
        return (self.step * self.reads,)


def test_a_window_reads_before_and_after_and_a_failed_read_costs_only_its_figure() -> None:
    window = energy.Meter(_Counter(step=2.0)).window()
    window.start()
    time.sleep(0.01)
    got = window.stop(request=4, output_token=16)
    assert got["joules"] == 2.0 and got["j_per_request"] == 0.5
    assert got["j_per_output_token"] == 0.125 and got["method"] == "test counter"
    assert 0.01 <= got["seconds"] < 1 and got["avg_watts"] == pytest.approx(2.0 / got["seconds"])

    broken = energy.Meter(_Counter(fail_on=2)).window()
    broken.start()
    assert broken.stop(query=1) == {
        "unavailable": "reading test counter failed: OSError: gone"}
    assert energy.Meter(None, "no counter here").window().stop(query=1) == {
        "unavailable": "no counter here"}


def test_the_window_is_the_measured_run_only_not_its_warm_up() -> None:
    """Warm-up queries sleep 0.2 s each, measured ones 1 ms: a window that held
    the warm-up would last far longer than the run's wall time."""
    clock = _Counter(step=1.0)
    meter = energy.Meter(clock)
    settings = loadgen.RunSettings(min_duration_s=0.02, min_queries=5, warmup_queries=2,
                                   windows=1)

    def issue(k: int) -> None:
        time.sleep(0.2 if k < settings.warmup_queries else 0.001)

    for run in (loadgen.run_offline, loadgen.run_single_stream):
        window = meter.window()
        result = run(window.watch(issue, settings.warmup_queries), 4, settings)
        got = window.stop(query=result.queries, sample=result.samples)
        assert result.wall_s <= got["seconds"] < result.wall_s + 0.1, run.__name__
        assert got["j_per_sample"] == pytest.approx(1.0 / result.samples)
    clients = meter.window()
    result = loadgen.run_multi_client(clients.watch(issue, settings.warmup_queries), 1, 3,
                                      settings)
    got = clients.stop(query=result.queries, sample=result.samples)
    assert result.wall_s <= got["seconds"] < result.wall_s + 0.1


def test_a_backend_without_a_meter_or_with_a_broken_one_says_why() -> None:
    assert energy.Meter.open(_NoMeter(), {}).why == (
        "the NONE backend reads no energy counter (implement Backend.energy_meter)")
    why = energy.Meter.open(_BadMeter(), {}).why
    assert why == "opening BAD's energy meter failed: KeyError: 'boom'"


class _NoMeter(Backend):
    name = "NONE"

    def precisions(self):
        return {"fp32"}

    def compile(self, *args, **kwargs):
        raise NotImplementedError


class _BadMeter(CpuBackend):
    name = "BAD"

    def energy_meter(self, options):
        raise KeyError("boom")


# --------------------------------------------------------------------------- NVML

class _FakeNvml(types.ModuleType):
    """pynvml as far as the reader uses it: cards whose total-energy counter
    advances 7,500 mJ per read (of any card), found by UUID or by index (0 and
    1), and one (UUID ...-old) that has none."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.mj, self.running = 1_000_000, 0

    def nvmlInit(self) -> None:
        self.running += 1

    def nvmlShutdown(self) -> None:
        self.running -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if not uuid.startswith("GPU-"):
            raise self.NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index not in (0, 1):
            raise self.NVMLError("Invalid Argument")
        return f"GPU-index-{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if handle.endswith("-old"):
            raise self.NVMLError("Not Supported")
        self.mj += 7_500
        return self.mj


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> _FakeNvml:
    torch = pytest.importorskip("torch")
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    uuids = {0: "5c0b7e1a-0000-4000-8000-000000000001", 1: "5c0b7e1a-0000-4000-8000-old"}
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: types.SimpleNamespace(uuid=uuids[d.index]))
    return fake


def test_nvml_gives_the_bound_cards_energy_by_its_uuid(nvml: _FakeNvml) -> None:
    import torch

    from backends.gpu import energy as gpu_energy

    meter = energy.Meter(gpu_energy.meter(torch.device("cuda", 0)))
    window = meter.window()
    window.start()
    got = window.stop(query=3, sample=30)
    assert got["joules"] == pytest.approx(7.5)  # one read's advance, mJ -> J
    assert got["j_per_query"] == pytest.approx(2.5) and got["j_per_sample"] == pytest.approx(0.25)
    assert got["method"] == ("NVML total energy (nvmlDeviceGetTotalEnergyConsumption), "
                             "cuda:0 (GPU-5c0b7e1a-0000-4000-8000-000000000001)")
    meter.close()
    assert nvml.running == 0  # NVML shut down with the meter


def test_nvml_without_a_counter_or_without_the_binding_is_unavailable(
        nvml: _FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from backends.gpu import energy as gpu_energy

    with pytest.raises(EnergyUnavailable, match=r"no total energy of cuda:1 .*Not Supported"):
        gpu_energy.meter(torch.device("cuda", 1))
    assert nvml.running == 0
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    with pytest.raises(EnergyUnavailable, match=r"pip install nvidia-ml-py"):
        gpu_energy.meter(torch.device("cuda", 0))


def test_nvml_meters_cards_by_index_and_names_a_missing_one(monkeypatch) -> None:
    from xpuperf.measure import nvml

    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = energy.Meter(nvml.meter({"GPU 0": 0, "GPU 1": 1}))
    window = meter.window()
    window.start()
    got = window.stop(output_token=60)
    # Each card's counter advanced two reads' 7.5 J (the fake's counter is shared).
    assert got["joules"] == pytest.approx(30) and got["j_per_output_token"] == pytest.approx(0.5)
    assert got["method"].endswith("(nvmlDeviceGetTotalEnergyConsumption), GPU 0, GPU 1")
    meter.close()
    with pytest.raises(EnergyUnavailable, match="no total energy of GPU 7: Invalid Argument"):
        nvml.meter({"GPU 0": 0, "GPU 7": 7})
    assert fake.running == 0  # shut down again after the failed open


def test_the_gpu_backend_on_the_cpu_reads_the_hosts_counters(monkeypatch) -> None:
    pytest.importorskip("torch")
    from backends.gpu.backend import GpuBackend

    monkeypatch.setattr(hostcpu, "RAPL_ROOT", Path("/nonexistent/powercap"))
    why = energy.Meter.open(GpuBackend(), {"device": "cpu"}).why
    assert why.startswith("no RAPL package zone under /nonexistent/powercap")


# --------------------------------------------------------------------------- RAPL

def _zone(root: Path, name: str, label: str, uj: int, max_uj: int = 262_143_328_850) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_sums_the_packages_and_counts_a_wrap(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 262_140_000_000)  # 3.33 J from the top
    _zone(tmp_path, "intel-rapl:1", "package-1", 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "dram", 5)  # a sub-zone: not a package
    _zone(tmp_path, "intel-rapl:2", "psys", 5)  # the platform's: overlaps the packages
    meter = hostcpu.energy_meter(tmp_path)
    assert meter.wraps_at == (262_143.32885, 262_143.32885)
    assert "intel-rapl:0, intel-rapl:1" in meter.method and "DRAM not included" in meter.method
    window = energy.Meter(meter).window()
    window.start()
    (p0 / "energy_uj").write_text("1000000\n")  # wrapped: 3.32885 J to the top, then 1 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("3000000\n")  # 2 J
    got = window.stop(query=2, sample=8)
    assert got["joules"] == pytest.approx(3.32885 + 1.0 + 2.0)


def test_rapl_missing_or_unreadable_is_unavailable_with_the_fix(tmp_path: Path,
                                                                monkeypatch) -> None:
    with pytest.raises(EnergyUnavailable, match="no RAPL package zone under"):
        hostcpu.energy_meter(tmp_path)
    _zone(tmp_path, "intel-rapl:0", "package-0", 1)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(tmp_path / "intel-rapl:0/energy_uj"))
    monkeypatch.setattr(hostcpu.RaplMeter, "read", denied)
    with pytest.raises(EnergyUnavailable, match=r"energy_uj is not readable by this user "
                                                r"\(root only since Linux 5.10"):
        hostcpu.energy_meter(tmp_path)


# --------------------------------------------------------------------------- sessions

# Offline and single stream at batch size 2: two items of one worker, one meter.
TWO_ITEMS = FAST_TIERS.replace("scenarios: {offline: all}",
                               "scenarios: {offline: all, single_stream: all}")


def test_records_carry_the_counters_energy_and_a_meter_that_breaks_costs_only_that(
        tmp_path: Path) -> None:
    """The meter's first item gets its figures from its two reads; its reads then
    fail, and the second item passes with the reason instead of figures."""
    folder = tiny_zoo(tmp_path, tiers=TWO_ITEMS)
    zoo = folder / "zoo.yaml"
    zoo.write_text(zoo.read_text().replace("    precisions: [fp32]\n", "    precisions: [fp32]\n"
                                           "    scenarios: [offline, single_stream]\n"))
    done = run_session(folder, "tests_selftest.fakes:MeteredBackend", "--backend-option",
                       "good_reads=2", "-k", "test_throughput", report="METERED")
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads((folder / "METERED" / "tiny-bert" / "result-fp32.json").read_text())
    bench = json.loads((folder / "METERED" / "benchmark.json").read_text())
    assert [p["Status"] for p in result["Performance"]] == ["passed", "passed"]
    [measured] = [b["extra_info"] for b in bench["benchmarks"]
                  if "avg_watts" in b["extra_info"]["energy"]]
    [broken] = [b["extra_info"] for b in bench["benchmarks"]
                if "unavailable" in b["extra_info"]["energy"]]
    used = measured["energy"]
    # The fake device draws METER_WATTS: the counter's watts, over the measured run.
    assert used["avg_watts"] == pytest.approx(METER_WATTS, rel=1e-2)
    assert used["joules"] == pytest.approx(METER_WATTS * used["seconds"], rel=1e-2)
    assert measured["wall_s"] <= used["seconds"] < measured["wall_s"] + 0.5
    assert used["j_per_query"] == pytest.approx(used["joules"] / measured["queries"])
    assert used["j_per_sample"] == pytest.approx(used["joules"] / measured["samples"])
    assert used["method"] == f"fake constant {METER_WATTS:g} W counter"
    why = "reading fake constant 40 W counter failed: RuntimeError: the counter's driver went away"
    assert broken["energy"] == {"unavailable": why} and broken["qps"] > 0
    # The result JSON and the report say the same.
    points = {p["Scenario"]: p for p in result["Performance"]}
    point = points[measured["scenario"]]
    assert (point["Avg Watts"], point["J per Query"], point["J per Sample"],
            point["Energy Method"]) == (used["avg_watts"], used["j_per_query"],
                                        used["j_per_sample"], used["method"])
    assert points[broken["scenario"]]["Energy Unavailable"] == why
    assert "Avg Watts" not in points[broken["scenario"]]
    html = (folder / "METERED" / "report.html").read_text()
    assert ">W</th>" in html and ">J / sample</th>" in html
