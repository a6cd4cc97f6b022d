"""The micro-benchmarks' parts (xpuperf.microperf), each with real inputs: the
workload reader on xpu-perf's own files, the op table's formulas, the timing
loop, the fp64 correctness rule and a wrong kernel it fails, the shares of
peak, the collectives' expected buffers and bus factors, and the report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xpuperf import launcher
from xpuperf.microperf import correctness, ops, peaks, timing, workloads, xccl

ROOT = Path(__file__).resolve().parents[1]
# bytedance/xpu-perf, projects/micro_perf/workloads/basic/tensor_gemm_ops/gemm.json, as it is.
XPU_PERF_GEMM = """{
    "cases": [
        {
            "arg_type": "default",
            "dtype": ["float32", "tfloat32", "float16", "bfloat16"],
            "K.N": [[4096, 4096], [8192, 8192], [8192, 1024], [1024, 8192]],
            "M": [
                1, 2, 4, 8, 16, 32, 64,
                128, 256, 384, 512, 640, 768, 896, 1024, 1152, 1280, 1408, 1536, 1664, 1792, 1920, 2048,
                2176, 2304, 2432, 2560, 2688, 2816, 2944, 3072, 3200, 3328, 3456, 3584, 3712, 3840, 3968, 4096,
                8192, 10240, 12288, 14336, 16384, 18432, 20480, 22528, 24576, 26624, 28672, 30720, 32768]
        }
    ]
}"""


# --------------------------------------------------------------------------- workloads

def test_xpu_perf_gemm_file_expands_as_xpu_perf_does(tmp_path: Path) -> None:
    (tmp_path / "tensor_gemm_ops").mkdir()
    (tmp_path / "tensor_gemm_ops" / "gemm.json").write_text(XPU_PERF_GEMM)
    found = workloads.load_dir(tmp_path)
    assert len(found) == 4 * 4 * 52  # dtypes x zipped (K, N) pairs x M
    assert {w.op for w in found} == {"gemm"}
    pairs = {(w.args["K"], w.args["N"]) for w in found}
    assert pairs == {(4096, 4096), (8192, 8192), (8192, 1024), (1024, 8192)}  # zipped, not crossed
    assert all("K.N" not in w.args for w in found)
    assert found[0].id == "gemm-fp32-K4096-N4096-M1"


def test_arg_type_list_multiplies_and_batch_case_stays_whole() -> None:
    cases = workloads.expand([{"arg_type": ["default", "llm"], "dtype": "float16", "M": [1, 2]},
                              {"arg_type": "batch", "M": [1, 2]}])
    assert [(c["arg_type"], c["M"]) for c in cases[:4]] == [("default", 1), ("default", 2),
                                                            ("llm", 1), ("llm", 2)]
    assert cases[4] == {"arg_type": "batch", "M": [1, 2]}
    assert workloads.Workload("gemm", "x", cases[2]).id == "gemm-fp16-M1-llm"


def test_several_ops_in_one_file_and_bad_files_named() -> None:
    found = workloads.parse(json.dumps({"add": [{"dtype": "float32", "batch_size": [1, 2],
                                                 "dim_size": 8}],
                                        "mul": [{"dtype": "float32", "batch_size": 4,
                                                 "dim_size": 8}]}), "w/ops.json")
    assert [(w.op, w.args["batch_size"]) for w in found] == [("add", 1), ("add", 2), ("mul", 4)]
    with pytest.raises(workloads.WorkloadError, match=r"w/gemm.json: gemm\[0\].K.N: each entry "
                                                      r"must be a list of 2 values"):
        workloads.parse('{"cases": [{"K.N": [[1, 2, 3]]}]}', "w/gemm.json")
    with pytest.raises(workloads.WorkloadError, match="not JSON"):
        workloads.parse("{", "w/gemm.json")
    with pytest.raises(workloads.WorkloadError, match="more than"):
        workloads.expand([{"a": list(range(200)), "b": list(range(200))}])


def test_shipped_workloads_name_known_ops() -> None:
    for tier in ("smoke", "full"):
        found = workloads.load_dir(ROOT / "suites" / "micro_perf" / "workloads" / tier)
        unknown = {w.op for w in found} - set(ops.table()) - set(xccl.OPS)
        assert not unknown, (tier, unknown)
        for w in found:  # every dtype a precision, every op's arguments there
            ops.precision(str(w.args["dtype"]))
            if w.op in ops.table():
                spec = ops.table()[w.op]
                spec.flops(w.args), spec.bytes(w.args, 2, 2)


# --------------------------------------------------------------------------- the op table

def test_formulas_of_gemm_attention_and_copies() -> None:
    t = ops.table()
    gemm = {"M": 64, "K": 256, "N": 128}
    assert t["gemm"].flops(gemm) == 2 * 64 * 256 * 128
    assert t["gemm"].bytes(gemm, 2, 2) == (64 * 256 + 256 * 128 + 64 * 128) * 2
    assert ops.figures(t["gemm"], gemm, "int8", 1.0).bytes == (64 * 256 + 256 * 128) + 64 * 128 * 4
    decode = {"batch_size": 2, "num_heads": 4, "head_dim": 8, "q_len": 1, "kv_len": 100}
    assert t["sdpa"].flops(decode) == 4 * 2 * 4 * 8 * 100
    prefill = {**decode, "q_len": 100}
    assert t["sdpa"].flops(prefill) == 4 * 2 * 4 * 8 * (100 * 101 // 2)  # causal pairs
    q4 = {**decode, "q_len": 4}
    assert t["sdpa"].flops(q4) == 4 * 2 * 4 * 8 * (97 + 98 + 99 + 100)
    fig = ops.figures(t["host2device"], {"batch_size": 4, "dim_size": 1024}, "fp32", 1e-6)
    d = fig.as_dict()
    assert d["mem_bw(GB/s)"] == pytest.approx(4 * 1024 * 4 / 1e-6 / 1e9)
    assert d["calc_flops_power(tflops)"] is None and d["latency(us)"] == pytest.approx(1.0)
    g = ops.figures(t["gemm"], gemm, "fp32", 1e-3).as_dict()
    assert g["calc_flops_power(tflops)"] == pytest.approx(2 * 64 * 256 * 128 / 1e-3 / 1e12)
    assert g["arithmetic_intensity"] == pytest.approx(g["flops"] / g["bytes"])


def test_unknown_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="dtype 'float12' is not known"):
        ops.precision("float12")
    assert ops.precision("bfloat16") == "bf16" and ops.precision("tf32") == "tf32"


# --------------------------------------------------------------------------- timing

def test_rotation_exceeds_the_cache_within_its_caps() -> None:
    assert timing.copies_for(1 << 20, 32 << 20) == 64  # 64 x 1 MiB = 2 x 32 MiB
    assert timing.copies_for(1 << 10, 32 << 20) == timing.MAX_COPIES
    assert timing.copies_for(400 << 20, 32 << 20) == 1
    assert timing.copies_for(0, 32 << 20) == 1


def test_run_times_each_call_for_the_budget_rotating_inputs() -> None:
    seen = []
    calls = [lambda k=k: seen.append(k) for k in range(3)]
    found = timing.run(calls, timing.Budget(0.0, 0.02, 50), timing.HostClock(lambda: None),
                       lambda: None, 100, 1000)
    assert 3 <= len(found.seconds) <= 50
    assert seen[:4] == [0, 0, 1, 2]  # one warm-up call, then the sets in turn
    d = found.as_dict()
    assert d["latency_us"]["p10"] <= d["latency_us"]["p50"] <= d["latency_us"]["p99"]
    assert d["rotated_sets"] == 3 and d["cold_cache"] is False


# --------------------------------------------------------------------------- correctness

def test_rule_passes_rounding_and_fails_a_wrong_result() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4096)
    fp32 = ref.astype(np.float32).astype(np.float64)
    half = ref.astype(np.float16).astype(np.float64)
    assert correctness.judge(half, fp32, ref, "fp16", "fp16").passed
    assert not correctness.judge(half, fp32, ref, "fp32", "fp32").passed  # fp32 asked: too far
    wrong = half * 1.01  # ten times fp16's epsilon
    v = correctness.judge(wrong, fp32, ref, "fp16", "fp16")
    assert not v.passed and "exceeds" in v.why()
    nan = half.copy()
    nan[3] = np.nan
    assert "1 non-finite" in correctness.judge(nan, fp32, ref, "fp16", "fp16").why()
    ints = np.arange(10.0)
    assert correctness.judge(ints, ints, ints, "int8", "int32").passed
    assert not correctness.judge(ints + (ints == 4), ints, ints, "int8", "int32").passed


@pytest.fixture(scope="module")
def cpu_host():
    """One host for the module: its ceilings are measured once."""
    from backends.cpu import CpuBackend
    from xpuperf.microperf.host import MicroHost

    return MicroHost.of(CpuBackend(), {}, "smoke")


@pytest.fixture(scope="module")
def wrong_host():
    from tests_selftest.contract_violators import WrongKernel
    from xpuperf.microperf.host import MicroHost

    return MicroHost.of(WrongKernel(), {}, "smoke")


# The paths of their own: int8's integer GEMM, attention cut along its heads,
# scatter checked whole, cast's target widened in the reference.
@pytest.mark.parametrize("op, dtype", [("gemm", "int8"), ("sdpa", "fp32"), ("scatter", "fp32"),
                                       ("cast", "fp32"), ("moe_gating", "fp32")])
def test_cpu_ops_pass_their_check(cpu_host, op: str, dtype: str) -> None:
    result = cpu_host.run_case(op, {"dtype": dtype, **ops.table()[op].example})
    assert result["passed"], result
    assert result["correctness"]["checked_elements"] > 0
    assert result["latency(us)"] > 0 and result["timing"]["calls"] >= timing.MIN_CALLS


def test_a_fast_wrong_kernel_fails_whatever_its_speed(wrong_host) -> None:
    result = wrong_host.run_case(
        "softmax", {"dtype": "fp32", **ops.table()["softmax"].example})
    assert result["implementation"] == "backend's own"
    assert not result["passed"] and "RMSE" in result["why"]


def test_cases_the_device_cannot_run_are_skipped_saying_why(wrong_host) -> None:
    host = wrong_host
    assert "does not run bf16" in host.run_case("softmax", {"dtype": "bf16", **ops.table()[
        "softmax"].example})["skipped"]
    assert "not in xpuperf's op table" in host.run_case("flash_mla", {"dtype": "fp32"})["skipped"]
    assert "pinned host memory" in host.run_case("host2device", {
        "dtype": "fp32", "pinned": True, **ops.table()["host2device"].example})["skipped"]


# --------------------------------------------------------------------------- peaks

def test_datasheet_rows_and_roofline_shares() -> None:
    p920 = peaks.datasheet("STC P920 (npu)")
    assert p920 is not None and p920.flops["fp16"] == 128e12
    assert peaks.datasheet("Graphcore C600").flops["fp8"] == 560e12
    assert peaks.datasheet("Moffett-AI S30").flops["int8"] == 90e12
    assert peaks.datasheet("x86_64") is None
    sheet = peaks.Peaks("test", {"fp16": 100e12}, 1e12)
    compute = sheet.share("fp16", 50e12, 1e9, 1.0)  # 0.5 s at peak, measured 1 s
    assert compute["bound"] == "compute" and compute["share"] == pytest.approx(0.5)
    memory = sheet.share("fp16", 1e6, 4e11, 1.0)
    assert memory["bound"] == "memory" and memory["share"] == pytest.approx(0.4)
    assert "no fp32 compute peak" in sheet.share("fp32", 1e9, 1e3, 1.0)["why"]


# --------------------------------------------------------------------------- collectives

def test_bus_factors_are_nccl_tests() -> None:
    assert xccl.bus_factor("all_reduce", 4) == 1.5
    assert [xccl.bus_factor(op, 4) for op in ("all_gather", "reduce_scatter", "all_to_all")] \
        == [0.75] * 3
    assert xccl.bus_factor("broadcast", 8) == xccl.bus_factor("p2p", 2) == 1.0


def test_wrong_elements_are_counted(tmp_path: Path) -> None:
    """A one-rank gloo world: each collective's result against the known buffer,
    then a planted corruption of three elements counted."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast"):
            case = xccl.Case(op, {"dtype": "bf16", "batch_size": 4, "dim_size": 8}, 0, 1,
                             torch.device("cpu"))
            assert case.wrong() == 0, op
        case = xccl.Case("all_reduce", {"dtype": "fp32", "batch_size": 4, "dim_size": 8}, 0, 1,
                         torch.device("cpu"))
        honest = case.call
        case.call = lambda: (honest(), case.buf[:3].add_(1))
        assert case.wrong() == 3
    finally:
        dist.destroy_process_group()
    with pytest.raises(ValueError, match="multiple of the world size 4"):
        xccl.Case("all_gather", {"dtype": "fp32", "batch_size": 6, "dim_size": 8}, 0, 4,
                  torch.device("cpu"))


def test_launcher_commands() -> None:
    assert launcher.command(4, None)[-2:] == ["--standalone", "--nproc-per-node=4"]
    assert launcher.command(8, "srun -n {world_size} --mpi=none")[:4] == ["srun", "-n", "8",
                                                                        "--mpi=none"]
    with pytest.raises(ValueError, match="write it with {world_size}"):
        launcher.command(2, "mpirun -np {ranks}")


# --------------------------------------------------------------------------- report

def test_report_writes_micro_perf_json_and_section(tmp_path: Path) -> None:
    from xpuperf.report import TEMPLATES, write_reports

    op = {"suite": "micro", "case": "gemm-fp32-M8", "op": "gemm", "group": "compute",
          "precision": "fp32", "hardware": "CPU", "args": {"M": 8}, "outcome": "passed",
          "latency(us)": 10.0, "mem_bw(GB/s)": 1.0, "calc_flops_power(tflops)": 0.5,
          "flops": 5e6, "bytes": 1e4, "arithmetic_intensity": 500.0,
          "share_of_peak": {"measured": {"share": 0.25, "peak_flops": 2e12},
                            "datasheet": {"share": None, "why": "no row"}},
          "correctness": {"passed": True, "rmse": 1e-7, "bound": 1e-6}}
    coll = {"suite": "micro", "case": "all_reduce-fp32-world_size2", "op": "all_reduce",
            "group": "xccl", "precision": "fp32", "hardware": "CPU", "outcome": "failed",
            "latency(us)": 50.0, "algo_bw(GB/s)": 2.0, "bus_bw(GB/s)": 2.0, "world_size": 2,
            "wrong_elements": 7}
    written = write_reports([op, coll], tmp_path, "CPU", {"tier": "smoke"}, TEMPLATES)
    doc = json.loads((tmp_path / "micro_perf.json").read_text())
    assert tmp_path / "micro_perf.json" in written
    gemm = doc["ops"]["gemm"][0]
    assert gemm["latency(us)"] == 10.0 and gemm["calc_flops_power(tflops)"] == 0.5
    assert gemm["share_of_peak"]["measured"]["share"] == 0.25
    ar = doc["ops"]["all_reduce"][0]
    assert ar["bus_bw(GB/s)"] == 2.0 and ar["correctness"] == {"wrong_elements": 7}
    page = (tmp_path / "report.html").read_text()
    assert 'id="micro"' in page and "25.0 %" in page and "7 wrong element(s)" in page
    assert 'class="roofline"' in page and not math.isnan(gemm["arithmetic_intensity"])


def test_runner_runs_cases_in_a_worker_and_reports_a_raising_one() -> None:
    from xpuperf.microperf.host import MicroRunner

    runner = MicroRunner("CPU", {"threads": "1"}, "smoke", timeout_s=120)
    try:
        assert runner.describe()["device"] == "cpu"
        ok = runner.run("add", {"dtype": "float32", **ops.table()["add"].example})
        assert ok["passed"] and ok["_call_seconds"], ok
        bad = runner.run("scatter", {"dtype": "float32", "src_batch_size": 4,
                                     "dst_batch_size": 8, "dim_size": 2})
        assert "scatter raised in the worker" in bad["error"]
        assert "the rows written must be distinct" in bad["error"]
    finally:
        runner.close()


# --------------------------------------------------------------------------- the suite

def run_suite(tmp_path: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "suites/micro_perf",
         "--hardware", "CPU", "--zoo-tier", "smoke", "--report-dir", str(tmp_path / "CPU"),
         "--benchmark-json", str(tmp_path / "bench.json"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_suite_runs_an_op_and_a_collective_into_its_reports(tmp_path: Path) -> None:
    """Through pytest as a user runs it: the items' records reach micro_perf.json,
    and pytest-benchmark's rounds are the calls the suite timed."""
    done = run_suite(tmp_path, "-k", "add-fp32 or all_reduce-fp32-world_size2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "micro-benchmarks: 2 case(s): 2 passed" in done.stdout, done.stdout[-3000:]
    doc = json.loads((tmp_path / "CPU" / "micro_perf.json").read_text())
    assert sorted(doc["ops"]) == ["add", "all_reduce"]
    add, = doc["ops"]["add"]
    assert add["correctness"]["passed"] and add["latency(us)"] > 0
    bench = {b["name"]: b for b in json.loads((tmp_path / "bench.json").read_text())["benchmarks"]}
    rounds = bench["test_micro_op[add-fp32-batch_size64-dim_size1024]"]["stats"]["rounds"]
    assert rounds == bench["test_micro_op[add-fp32-batch_size64-dim_size1024]"][
        "extra_info"]["timing"]["calls"] > 1


@pytest.mark.parametrize("flag, value, said", [
    ("--micro-workloads", "no/such/folder", "argument --micro-workloads: no/such/folder: no such"),
    ("--micro-launcher", "mpirun -np {ranks}", "write it with {world_size}"),
])
def test_bad_micro_flags_are_usage_errors(tmp_path: Path, flag: str, value: str,
                                          said: str) -> None:
    done = run_suite(tmp_path, flag, value, "--collect-only")
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr[-3000:]
    assert said in done.stderr, done.stderr[-3000:]
