"""The backend contract (backends/base.py), item by item; see __init__.py for how
to run it on a backend."""
from __future__ import annotations

import re

import numpy as np
import pytest

from backends.base import PRECISIONS, CompileReport, EnergyMeter, EnergyUnavailable
from xpuperf.ceilings import Ceilings, DeclarationError
from xpuperf.contract_kit.models import MODELS, feeds

AFFINE = MODELS["affine"]
# At fp16, bf16 or int8, a 4-wide dot product of values in [-1, 1] lands within
# this fraction of the output's scale of the exact one (int8 is the loosest).
LOW_PRECISION_ATOL = 0.15


def check_values(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                 precision: str, what: str) -> None:
    """Outputs against numpy's result: closely at fp32, within the error of the
    number format otherwise (argmax only at fp32: near-ties may flip)."""
    if precision == "fp32":
        for name, want in expected.items():
            np.testing.assert_allclose(outputs[name], want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{what}: output {name!r}")
    else:
        scale = float(np.abs(expected["y"]).max())
        np.testing.assert_allclose(outputs["y"], expected["y"], rtol=0,
                                   atol=LOW_PRECISION_ATOL * max(scale, 1.0),
                                   err_msg=f"{what} at {precision}: output 'y'")


def test_info_is_complete(backend) -> None:
    info = backend.info()
    missing = [k for k in ("name", "device", "device_count") if k not in info]
    assert not missing, f"info() lacks {', '.join(missing)}; it has {', '.join(sorted(info))}"
    assert info["name"] == backend.name, f"info()['name'] {info['name']!r} != {backend.name!r}"
    assert isinstance(info["device"], str) and info["device"], "info()['device'] must name it"
    assert isinstance(info["device_count"], int) and info["device_count"] >= 1, \
        f"info()['device_count'] must be an int >= 1, got {info['device_count']!r}"
    versions = [k for k, v in info.items() if isinstance(v, str) and re.search(r"\d+\.\d+", v)]
    assert versions, f"info() gives no software-stack version (e.g. 'sdk': '1.2.3'): {info}"
    try:  # the ceilings every item reads: a declaration xpuperf cannot read stops them all
        Ceilings(backend.name, info)
    except DeclarationError as e:
        pytest.fail(str(e))


def test_energy_meter_reads_counters_or_says_why_not(backend, backend_options) -> None:
    """Optional: a meter whose counters do not run backwards (a wrap aside), one
    per ``wraps_at`` entry, and a method named; or EnergyUnavailable with why."""
    try:
        meter = backend.energy_meter(backend_options)
    except EnergyUnavailable as e:
        assert str(e), "EnergyUnavailable must say why there is no counter"
        pytest.skip(f"no energy counter: {e}")
    try:
        assert isinstance(meter, EnergyMeter), \
            f"energy_meter() must return a backends.base.EnergyMeter, got {type(meter).__name__}"
        assert meter.method, "EnergyMeter.method must name the counter for the record"
        first, second = meter.read(), meter.read()
        assert len(first) == len(second) == len(meter.wraps_at), \
            f"read() gave {len(first)} counters, wraps_at names {len(meter.wraps_at)}"
        assert all(isinstance(j, float) for j in first), f"read() must give floats (J): {first}"
        assert all(b <= a or w is not None for b, a, w in zip(first, second, meter.wraps_at)), \
            f"a counter that does not wrap ran backwards: {first} then {second}"
    finally:
        meter.close()


def test_precisions_are_known(backend) -> None:
    declared = backend.precisions()
    assert declared and declared <= set(PRECISIONS), \
        f"precisions() must be a non-empty subset of {PRECISIONS}, got {declared}"


def test_outputs_as_declared(compile_model, precision: str) -> None:
    compiled = compile_model("affine", precision)
    assert isinstance(compiled.report, CompileReport) and compiled.report.status == "ok"
    for batch in (1, 3):
        out = compiled.run(feeds(AFFINE, batch, seed=1))
        assert isinstance(out, dict) and set(out) == set(AFFINE.outputs), \
            f"outputs {sorted(out) if isinstance(out, dict) else type(out)}, declared {sorted(AFFINE.outputs)}"
        for name, (dtype, shape) in AFFINE.outputs.items():
            value = out[name]
            assert isinstance(value, np.ndarray), f"output {name!r} is a {type(value).__name__}"
            assert value.dtype == dtype, f"output {name!r} is {value.dtype}, declared {dtype}"
            assert value.shape == shape(batch), \
                f"output {name!r} has shape {value.shape} at batch {batch}, declared {shape(batch)}"


def test_feeds_by_name(compile_model, precision: str) -> None:
    """alpha and beta have one shape and dtype: only names tell them apart."""
    compiled = compile_model("affine", precision)
    given = feeds(AFFINE, 3, seed=2)
    out = compiled.run(given)
    check_values(out, AFFINE.expect(given), precision, "inputs fed by name")
    backwards = compiled.run(dict(reversed(given.items())))
    for name in AFFINE.outputs:
        assert np.array_equal(out[name], backwards[name]), \
            f"output {name!r} depends on the order of the feed dict"


def test_unknown_feed_refused(compile_model, precision: str) -> None:
    compiled = compile_model("affine", precision)
    given = feeds(AFFINE, 1, seed=3)
    with pytest.raises(Exception) as refused:
        compiled.run({**given, "not_an_input": given["alpha"]})
    assert "not_an_input" in str(refused.value), \
        f"the refusal must name the unknown feed: {refused.value}"


def test_missing_feed_refused(compile_model, precision: str) -> None:
    compiled = compile_model("affine", precision)
    with pytest.raises(Exception) as refused:
        compiled.run({"alpha": feeds(AFFINE, 1, seed=4)["alpha"]})
    assert "beta" in str(refused.value), f"the refusal must name the missing input: {refused.value}"


def test_unread_input_accepted(compile_model, precision: str) -> None:
    """A declared input the graph never reads (a frontend may drop it) is fed like
    any other."""
    model = MODELS["unused"]
    given = feeds(model, 3, seed=5)
    out = compile_model("unused", precision).run(given)
    np.testing.assert_allclose(out["y"], model.expect(given)["y"], rtol=1e-2, atol=1e-2)


def test_deterministic_and_not_cached(compile_model, precision: str) -> None:
    """The same inputs give the same bits; new inputs, also in the same buffers,
    give new outputs (no output cache)."""
    compiled = compile_model("affine", precision)
    first, second = feeds(AFFINE, 3, seed=6), feeds(AFFINE, 3, seed=7)
    out_first = compiled.run(first)
    out_second = compiled.run(second)
    check_values(out_second, AFFINE.expect(second), precision, "a second, different batch")
    again = compiled.run(first)
    for name in AFFINE.outputs:
        assert np.array_equal(out_first[name], again[name]), \
            f"output {name!r} differs between two runs of the same inputs"
    buffers = {k: v.copy() for k, v in first.items()}
    compiled.run(buffers)
    for name, value in second.items():
        buffers[name][...] = value  # new contents, same arrays
    check_values(compiled.run(buffers), AFFINE.expect(second), precision,
                 "the same arrays refilled with other values")


def test_precision_really_used(compile_model, precision: str) -> None:
    """report.precision is what ran: a model reported at a lower precision than
    fp32 does not give fp32's bits."""
    report = compile_model("affine", precision).report
    assert report.precision in PRECISIONS, f"report.precision {report.precision!r} is not one of {PRECISIONS}"
    if report.precision == "fp32":
        return
    given = feeds(AFFINE, 3, seed=8)
    low = compile_model("affine", precision).run(given)["y"]
    full = compile_model("affine", "fp32").run(given)["y"]
    assert not np.array_equal(low, full), \
        f"asked for {precision}, reported {report.precision}, but the outputs are fp32's to the bit"


def test_cache_hit_is_a_load(compile_model, precision: str, tmp_path) -> None:
    first = compile_model("affine", precision, cache_dir=tmp_path)
    assert not first.report.cached, "a compile into an empty cache_dir reported cached=True"
    if not any(tmp_path.iterdir()):
        pytest.skip("the backend keeps no compile cache: it left cache_dir empty")
    given = feeds(AFFINE, 3, seed=9)
    loaded = compile_model("affine", precision, cache_dir=tmp_path)
    assert loaded.report.cached, "the second compile from a filled cache_dir reported cached=False"
    assert loaded.report.precision == first.report.precision
    assert loaded.report.seconds >= 0
    for name, value in first.run(given).items():
        assert np.array_equal(loaded.run(given)[name], value), \
            f"output {name!r} of the cached model differs from the compiled one"


def test_run_after_close_refused(backend, artifacts, backend_options, precision: str) -> None:
    """close() lets go of the compiled model: nothing runs on it afterwards."""
    compiled = backend.compile(artifacts["affine"], precision, (1, 3), dict(backend_options))
    given = feeds(AFFINE, 1, seed=10)
    compiled.run(given)
    compiled.close()
    with pytest.raises(Exception):
        compiled.run(given)


def test_resident_outputs_equal_run(compile_model, precision: str) -> None:
    """Where Compiled.resident() is offered, put -> run -> get gives run's outputs
    to the bit (the device-resident figures are of the same computation), and a
    query's outputs survive the next query (none are handed out stale)."""
    compiled = compile_model("affine", precision)
    resident = compiled.resident()
    if resident is None:
        pytest.skip("the backend offers no device-resident path (Compiled.resident() is None)")
    first, second = feeds(AFFINE, 3, seed=11), feeds(AFFINE, 3, seed=12)
    on_device = [resident.run(resident.put(given)) for given in (first, second)]
    for given, outputs, which in zip((first, second), on_device, ("first", "second")):
        got, want = resident.get(outputs), compiled.run(given)
        assert isinstance(got, dict) and set(got) == set(want), \
            f"get() gave {sorted(got) if isinstance(got, dict) else type(got)}, " \
            f"run() gives {sorted(want)}"
        for name, value in want.items():
            assert isinstance(got[name], np.ndarray) and got[name].dtype == value.dtype, \
                f"resident output {name!r} is {type(got[name]).__name__} " \
                f"{getattr(got[name], 'dtype', '')}, run() gives {value.dtype}"
            assert np.array_equal(got[name], value), \
                f"resident output {name!r} of the {which} of two queries differs from run()'s"


def test_op_provider_kernels_compute_right(backend, backend_options) -> None:
    """Optional: an OpProvider (backends.base) on a device torch knows, at
    precisions of PRECISIONS, whose own kernels each compute their op within
    the micro-benchmarks' fp64 rule on a small case at fp32
    (xpuperf.microperf.correctness)."""
    from backends.base import OpProvider
    from xpuperf.extras import MissingExtra, require
    from xpuperf.microperf import ops
    from xpuperf.microperf.host import MicroHost

    provider = backend.op_provider(backend_options)
    if provider is None:
        pytest.skip("no op provider: the backend runs no micro-benchmarks")
    assert isinstance(provider, OpProvider), \
        f"op_provider() must return a backends.base.OpProvider, got {type(provider).__name__}"
    assert provider.precisions <= set(PRECISIONS), \
        f"OpProvider.precisions {sorted(provider.precisions)} are not all of {PRECISIONS}"
    unknown = sorted(set(provider.implementations) - set(ops.table()))
    assert not unknown, (f"kernels registered for ops the op table lacks: {unknown} "
                         f"(xpuperf/microperf/ops.py names {sorted(ops.table())})")
    try:  # the ops run on torch: a kit installed without the torch extra cannot run them
        torch = require("torch", "the micro-benchmarks' op provider")
    except MissingExtra as e:
        pytest.skip(str(e))
    torch.device(provider.device)  # raises, naming it, for a device torch does not know
    host = MicroHost.of(backend, backend_options, "smoke")
    for op in sorted(provider.implementations):
        result = host.run_case(op, {"dtype": "fp32", **ops.table()[op].example})
        assert result.get("passed"), f"the backend's own {op} computes wrong: {result}"
