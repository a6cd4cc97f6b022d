"""The one table of device ceilings (xpuperf.ceilings): declared ceilings read,
malformed ones refused with the backend, the field and the fix, measured ones
measured once, element bytes; and the readers (micro-benchmarks, LLM facts)
taking theirs from it."""
from __future__ import annotations

import pytest

from backends.cpu import CpuBackend
from xpuperf.ceilings import (DECLARED, Ceiling, Ceilings, DeclarationError, element_bytes,
                              torch_gemm)


def _not_measured() -> Ceiling:
    raise AssertionError("a declared ceiling was measured")


def test_declared_ceilings_are_read_per_precision_and_not_measured():
    one = Ceilings("ACME", {"peak_flops": 2e15, "memory_bandwidth": 3e12})
    assert one.peak_flops("fp16", "cpu", _not_measured) == Ceiling(2e15, DECLARED)
    assert one.peak_flops("int8", "cpu", _not_measured) == Ceiling(2e15, DECLARED)
    assert one.memory_bandwidth("cpu") == Ceiling(3e12, DECLARED)

    per_precision = Ceilings("ACME", {"peak_flops": {"fp16": 1e15, "fp8": 2e15}})
    assert per_precision.peak_flops("fp8", "cpu", _not_measured).value == 2e15
    assert per_precision.declares_flops("fp16") and not per_precision.declares_flops("fp32")
    # A precision it declares nothing for is measured.
    assert per_precision.peak_flops("fp32", "cpu", lambda: Ceiling(5.0, "m")) == Ceiling(5.0, "m")


@pytest.mark.parametrize("info, field, says", [
    ({"peak_flops": "fast"}, "peak_flops", "is 'fast'"),
    ({"peak_flops": -1}, "peak_flops", "is -1"),
    ({"peak_flops": True}, "peak_flops", "is True"),
    ({"peak_flops": {"fp16": "1e15"}}, "peak_flops", "has {'fp16': '1e15'}"),
    ({"peak_flops": {"fp17": 1e15}}, "peak_flops", "names no precision xpuperf knows: fp17"),
    ({"memory_bandwidth": {"hbm": 3e12}}, "memory_bandwidth", "is {'hbm': 3000000000000.0}"),
    ({"memory_bandwidth": 0}, "memory_bandwidth", "is 0"),
])
def test_a_malformed_declaration_is_refused_naming_backend_field_and_fix(info, field, says):
    with pytest.raises(DeclarationError) as e:
        Ceilings("ACME", info)
    message = str(e.value)
    assert f"the ACME backend's info()[{field!r}] {says}: " in message
    assert "leave it out to have it measured" in message or "key it by" in message


def test_a_measured_ceiling_is_measured_once_per_device_and_precision_and_handed_on():
    calls = []

    def measure() -> Ceiling:
        calls.append(1)
        return torch_gemm("fp32", "cpu")

    table = Ceilings("CPU", {})
    first = table.peak_flops("fp32", "cpu", measure)
    assert first.value > 0 and "512x512 GEMMs" in first.source
    assert table.peak_flops("fp32", "cpu", measure) is first and len(calls) == 1
    table.peak_flops("tf32", "cpu", measure)  # another precision: its own measurement
    assert len(calls) == 2

    # The next worker of the session takes them as measured.
    handed = Ceilings("CPU", {}, table.wire())
    assert handed.peak_flops("fp32", "cpu", _not_measured) == first


def test_a_failed_measurement_is_not_kept():
    table = Ceilings("CPU", {})

    def lost() -> Ceiling:
        raise RuntimeError("worker lost")
    with pytest.raises(RuntimeError):
        table.peak_flops("fp32", "cpu", lost)
    assert table.peak_flops("fp32", "cpu", lambda: Ceiling(1.0, "again")).source == "again"


def test_element_bytes():
    assert [element_bytes(p) for p in ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int64")] \
        == [4, 4, 2, 2, 1, 1, 8]
    with pytest.raises(ValueError, match="no element size for precision 'fp4': one of fp32, "):
        element_bytes("fp4")


def test_the_llm_facts_price_weights_and_kv_cache_at_the_element_bytes():
    from xpuperf.generation.models import LMFacts, LMShape

    facts = LMFacts(params=1000, read_params=900, shape=LMShape(2, 64, 32, 4))
    assert facts.weight_bytes("bf16") == 900 * 2
    assert facts.kv_bytes_per_token("fp32") == 2 * 2 * 32 * 4


class _Declaring(CpuBackend):
    def __init__(self, info):
        super().__init__()
        self._declared = info

    def info(self):
        return {**super().info(), **self._declared}


def test_the_micro_benchmarks_judge_against_the_table():
    from xpuperf.microperf import ops
    from xpuperf.microperf.host import MicroHost

    host = MicroHost.of(_Declaring({"peak_flops": {"fp32": 1e9}, "memory_bandwidth": 1e9}),
                        {}, "smoke")
    share = host.run_case("gemm", {"dtype": "fp32", **ops.table()["gemm"].example})[
        "share_of_peak"]["measured"]
    assert share["source"] == "compute: declared by the backend; copy: declared by the backend"
    assert share["peak_flops"] == 1e9 and share["peak_bytes_per_s"] == 1e9

    with pytest.raises(DeclarationError, match="the CPU backend's info\\(\\)\\['peak_flops'\\]"):
        MicroHost.of(_Declaring({"peak_flops": "fast"}), {}, "smoke")


def test_the_model_items_take_the_declared_peak_and_refuse_a_malformed_one(tmp_path):
    from xpuperf.session import BenchSession
    from xpuperf.zoo import BUILTIN_ZOO, load_zoo

    zoo = load_zoo(BUILTIN_ZOO, "smoke")
    combo = next(c for c in zoo.combinations() if c.precision == "fp32")

    def session(info):
        return BenchSession(zoo, "CPU", _Declaring(info), {}, tmp_path / "cache", tmp_path / "data")
    assert session({"peak_flops": {"fp32": 5e10}}).peak_flops(combo) == Ceiling(5e10, DECLARED)
    with pytest.raises(DeclarationError, match="'peak_flops'\\] is 'fast': declare a positive"):
        session({"peak_flops": "fast"}).peak_flops(combo)
