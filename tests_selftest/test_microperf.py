"""The micro-benchmarks' parts (xpuperf.microperf), each with real inputs: the
workload reader on xpu-perf's own files, the op table's formulas, the timing
loop, the fp64 correctness rule and a wrong kernel it fails, the shares of
peak, the collectives' expected buffers and bus factors, and the report."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests_selftest.sessions import ROOT, python_env
from xpuperf import launcher
from xpuperf.microperf import correctness, host, ops, peaks, timing, workloads, xccl

# bytedance/xpu-perf's llm workload files, unchanged (the commit: SOURCE.md there).
XPU_PERF_LLM = Path(__file__).with_name("xpu_perf_workloads")
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


def test_llm_arguments_are_read_as_xpu_perf_reads_them() -> None:
    gemm = workloads.Workload("gemm", "w", {"arg_type": "llm", "dtype": "float32",
                                           "num_tokens": 64, "sp_size": 2, "hidden_size": 128,
                                           "new_hidden_size": 32})
    assert gemm.op_args == {"arg_type": "llm", "dtype": "float32", "M": 32, "K": 128, "N": 32}
    assert gemm.id == "gemm-fp32-num_tokens64-sp_size2-hidden_size128-new_hidden_size32-llm"
    norm = workloads.Workload("rms_norm", "w", {"arg_type": "llm", "num_tokens": 8,
                                               "hidden_size": 16})
    assert (norm.op_args["batch_size"], norm.op_args["dim_size"]) == (8, 16)
    native = workloads.Workload("swiglu", "w", {"arg_type": "llm", "num_tokens": 8,
                                               "hidden_size": 16})
    assert native.op_args == native.args  # the op table reads LLM names itself
    plain = workloads.Workload("gemm", "w", {"num_tokens": 8})
    assert plain.op_args == plain.args  # default arg_type: names as written
    with pytest.raises(workloads.WorkloadError, match="w: gemm: num_tokens 9 must be a multiple "
                                                      "of sp_size 2"):
        workloads.Workload("gemm", "w", {"arg_type": "llm", "num_tokens": 9, "sp_size": 2}
                           ).op_args


def test_xpu_perf_ccl_file_runs_its_cases(tmp_path: Path) -> None:
    """xpu-perf's ccl_ops.json as it is: every case expands, maps num_tokens and
    hidden_size to the collective's buffer, and its 8-token cases run (one gloo
    rank in this process) with no wrong element; the 1M-token ones are 4 GiB a
    rank, beyond a selftest."""
    import torch
    import torch.distributed as dist

    found = [w for w in workloads.load_dir(XPU_PERF_LLM) if w.op in xccl.OPS]
    assert [(op, sum(w.op == op for w in found)) for op in
            ("all_reduce", "reduce_scatter", "all_gather", "all_to_all")] == [
        ("all_reduce", 4), ("reduce_scatter", 4), ("all_gather", 6), ("all_to_all", 6)]
    assert {(w.op_args["batch_size"], w.op_args["dim_size"], w.op_args["world_size"])
            for w in found} == {(8, 1024, 8), (1048576, 1024, 8)}
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        for w in (w for w in found if w.args["num_tokens"] == 8):
            case = xccl.Case(w.op, w.op_args, 0, 1, torch.device("cpu"))
            assert case.wrong() == 0, w.id
    finally:
        dist.destroy_process_group()


def test_xpu_perf_gemm_file_runs_or_skips_saying_why(cpu_host) -> None:
    """xpu-perf's gemm_ops.json as it is: moe_gating_gemm runs at its size and
    passes its check; the quantised ops skip, naming themselves."""
    found = [w for w in workloads.load_dir(XPU_PERF_LLM) if w.op not in xccl.OPS]
    assert sorted({w.op for w in found}) == ["moe_gating_gemm", "moe_quant_group_gemm",
                                            "quant_matmul"]
    for w in found:
        result = cpu_host.run_case(w.op, w.op_args)
        if w.op == "moe_gating_gemm":
            assert result["passed"], result
            assert result["flops"] == 2 * 8192 * 8192 * 128
        else:
            assert f"op {w.op!r} is not in xpuperf's op table" in result["skipped"]
    mixed = cpu_host.run_case("moe_gating_gemm", {**ops.table()["moe_gating_gemm"].example,
                                                  "dtype": "float32", "dst_dtype": "bfloat16"})
    assert "dst_dtype bfloat16 beside dtype float32" in mixed["skipped"]


def test_shipped_workloads_name_known_ops() -> None:
    for tier in ("smoke", "full"):
        found = workloads.load_dir(ROOT / "suites" / "micro_perf" / "workloads" / tier)
        unknown = {w.op for w in found} - set(ops.table()) - set(xccl.OPS)
        assert not unknown, (tier, unknown)
        for w in found:  # every dtype a precision, every op's arguments there
            ops.precision(str(w.args["dtype"]))
            if w.op in ops.table():
                spec = ops.table()[w.op]
                spec.flops(w.op_args), spec.bytes(w.op_args, 2, 2)


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


def test_ragged_group_gemm_counts_each_experts_tokens() -> None:
    spec = ops.table()["moe_group_gemm"]
    ragged = {"tokens_per_expert": [8, 3, 0, 13], "K": 32, "N": 16}
    assert spec.flops(ragged) == 2 * 24 * 32 * 16
    assert spec.bytes(ragged, 2, 4) == (24 * 32 + 4 * 32 * 16) * 2 + 24 * 16 * 4
    equal = {"num_experts": 4, "tokens_per_expert": 6, "K": 32, "N": 16}
    assert spec.flops(equal) == spec.flops({**ragged, "tokens_per_expert": [6] * 4})
    with pytest.raises(ValueError, match="lists 4 experts, num_experts says 3"):
        spec.flops({**ragged, "num_experts": 3})


def test_ragged_group_gemm_is_checked_by_its_groups() -> None:
    """A kernel that splits the tokens evenly (the equal-count shortcut) computes
    a different product, and the fp64 rule fails it."""
    import torch

    spec = ops.table()["moe_group_gemm"]
    made = spec.inputs(spec.example, "fp32", torch.Generator().manual_seed(0))
    v = made.values
    right = spec.run(**v).double().numpy()
    even = torch.cat([x @ w for x, w in zip(v["input"].chunk(4), v["mat2"])])
    assert right.shape == (24, 16)
    assert correctness.judge(right, right, right, "fp32", "fp32").passed
    assert not correctness.judge(even.double().numpy(), right, right, "fp32", "fp32").passed


def test_unknown_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="dtype 'float12' is not known"):
        ops.precision("float12")
    assert ops.precision("bfloat16") == "bf16" and ops.precision("tf32") == "tf32"
    with pytest.raises(ValueError, match="compute_mode 'softmax-first' is not one of "
                                         "pre-softmax, post-softmax"):
        ops.table()["moe_softmax_topk"].flops({**ops.table()["moe_softmax_topk"].example,
                                               "compute_mode": "softmax-first"})


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
    # a count as well as a time: the measured GEMM ceiling's many calls
    counted = timing.run(calls, timing.Budget(0.0, 0.0, 50, min_calls=20),
                         timing.HostClock(lambda: None), lambda: None, 100, 1000)
    assert len(counted.seconds) == 20
    assert host.CEILING_BUDGET.min_calls >= 32 and host.CEILING_BUDGET.warmup_s > 0
    windows = timing.window_latencies([1e-6 * k for k in range(40)])
    assert len(windows) == timing.WINDOWS and windows == sorted(windows)  # call order kept
    assert timing.window_latencies([2e-6, 4e-6]) == [2.0, 4.0]  # fewer calls: one a window


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
                                       ("cast", "fp32"), ("moe_gating", "fp32")]
                         # xpu-perf's ops added with their own inputs (a positive domain,
                         # an out-of-place index_add, ragged groups) at a half precision
                         + [(op, "bf16") for op in ("sub", "div", "sin", "cos", "log", "sqrt",
                                                    "reduce_min", "index_add", "swiglu",
                                                    "add_rms_norm", "moe_softmax_topk",
                                                    "moe_gating_gemm", "moe_group_gemm")])
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
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "suites/micro_perf",
         "--hardware", "CPU", "--zoo-tier", "smoke", "--report-dir", str(tmp_path / "CPU"),
         "--benchmark-json", str(tmp_path / "bench.json"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=python_env())


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
    # That run as the baseline of the next: the op is judged by its windows (the
    # verdict itself, on planted slowdowns: test_gate_and_compare_...).
    gated = run_suite(tmp_path / "gated", "-k", "add-fp32", "--baseline",
                      str(tmp_path / "bench.json"), "--gate-inconclusive", "pass")
    assert "speed gate against baseline" in gated.stdout, gated.stdout[-3000:]
    assert "1 item(s) compared" in gated.stdout, gated.stdout[-3000:]
    judged, = json.loads((tmp_path / "gated" / "CPU" / "micro_perf.json").read_text())[
        "ops"]["add"]
    assert len(judged["window_latency_us"]) > 1


@pytest.mark.parametrize("flag, value, said", [
    ("--micro-workloads", "no/such/folder", "argument --micro-workloads: no/such/folder: no such"),
    ("--micro-launcher", "mpirun -np {ranks}", "write it with {world_size}"),
])
def test_bad_micro_flags_are_usage_errors(tmp_path: Path, flag: str, value: str,
                                          said: str) -> None:
    done = run_suite(tmp_path, flag, value, "--collect-only")
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr[-3000:]
    assert said in done.stderr, done.stderr[-3000:]


# --------------------------------------------------------------------------- gate and compare

def _slow_add(a, b):
    """add, computed four times over: a slowdown of 4x whatever the host's speed."""
    import torch

    for _ in range(3):
        torch.add(a, b)
    return torch.add(a, b)


def test_gate_and_compare_judge_micro_items_by_their_windows(tmp_path: Path) -> None:
    """A micro item measured, measured again unchanged, and measured with a
    planted slowdown: the gate (its baseline read back from pytest-benchmark's
    JSON) and `xpuperf compare` (reports folders) call the slowdown regressed
    and the rerun anything but."""
    from backends.base import OpProvider
    from backends.cpu import CpuBackend
    from xpuperf.gate import GateSettings, against_baseline
    from xpuperf.gate.baseline import from_benchmark_json
    from xpuperf.gate.verdict import REGRESSED, from_latencies
    from xpuperf.microperf.host import MicroHost
    from xpuperf.report import TEMPLATES, render_compare, write_reports
    from xpuperf.report.compare import compare
    from xpuperf.report.runs import load_run

    class SlowAdd(CpuBackend):
        def op_provider(self, options):
            return OpProvider("cpu", implementations={"add": _slow_add}, precisions=("fp32",))

    case = "add-fp32-batch_size64-dim_size1024"
    args = {"dtype": "fp32", "batch_size": 64, "dim_size": 1024}

    def record(host: MicroHost) -> dict:
        result = host.run_case("add", args)
        windows = timing.window_latencies(result.pop(xccl.SAMPLES))
        assert len(windows) == min(timing.WINDOWS, result["timing"]["calls"])
        return {"suite": "micro", "case": case, "op": "add", "group": "memory",
                "precision": "fp32", "hardware": "CPU", "outcome": "passed", **result,
                "window_latency_us": windows}

    # One thread: torch's pool spinning against five other sessions' work on two
    # cores makes a 20 us add take milliseconds, and its noise with it.
    fast = MicroHost.of(CpuBackend(), {"threads": "1"}, "smoke")
    slow_host = MicroHost.of(SlowAdd(), {"threads": "1"}, "smoke")
    # The baseline and the unchanged rerun measured in turns, their windows pooled
    # (64 each, what a record keeps): a shared host's speed drifts by 20 % within a
    # second (a CI lane on the other core), which a stored baseline measured
    # before the rerun would take for a regression. The planted 4x needs no care.
    turns = [(record(fast), record(fast)) for _ in range(4)]
    base, rerun = ({**parts[0], "window_latency_us": [w for part in parts
                                                      for w in part["window_latency_us"]]}
                   for parts in zip(*turns))
    slow = record(slow_host)

    def figures(r: dict) -> dict:
        return {"window_qps": from_latencies(r["window_latency_us"])}

    bench = {"machine_info": {"xpuperf": {"hardware": "CPU"}},
             "benchmarks": [{"param": case, "extra_info": base}]}
    baseline = from_benchmark_json(bench, "bench.json", "CPU")
    settings = GateSettings(threshold_pct=20.0)
    # An undecided item is measured again, as the gate does: its new windows
    # pooled with the old (the same record's again would count each window twice,
    # an interval too narrow for the noise: an unchanged rerun called regressed).
    verdicts = {name: against_baseline(case, figures(r), baseline, settings,
                                       lambda host=host: figures(record(host))).verdict
                for name, r, host in (("rerun", rerun, fast), ("slow", slow, slow_host))}
    assert verdicts["slow"].verdict == REGRESSED, verdicts["slow"].describe()
    assert verdicts["rerun"].verdict != REGRESSED, verdicts["rerun"].describe()

    runs = []
    for name, r in (("base", base), ("rerun", rerun), ("slow", slow)):
        write_reports([r], tmp_path / name, "CPU", {"tier": "gate"}, TEMPLATES)
        runs.append(load_run(tmp_path / name))
    found = compare(runs, threshold_pct=20.0)
    line, = found.micro
    cells = {c.label: c for c in line.cells}
    assert cells["base"].verdict is None and line.op == "add"
    assert cells["slow"].verdict.verdict == REGRESSED
    assert cells["rerun"].verdict.verdict != REGRESSED
    page = render_compare(found, TEMPLATES)
    assert 'id="micro"' in page and f">{REGRESSED}<" in page
