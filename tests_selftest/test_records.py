"""Records must cross pytest-xdist's wire (execnet), which takes plain Python only, and
every figure of the field table must travel from a record to the result file and back."""
import json

import execnet.gateway_base as wire
import numpy as np
import pytest

from xpuperf.records import NUMERICS, PERFORMANCE, Field, PerfPoint, jsonable


def test_numpy_scalars_become_plain_python_and_cross_the_wire():
    record = {"metrics": {"accuracy": np.float64(60.9), "auc": np.float32(0.5)},
              "count": np.int64(3), "flag": np.bool_(True), "ok": True, "shape": (np.int32(2), 4),
              "nan": np.float64("nan"), "inf": float("inf"), "name": "x", "none": None}
    out = jsonable(record)
    assert out == {"metrics": {"accuracy": 60.9, "auc": 0.5}, "count": 3, "flag": True, "ok": True,
                   "shape": [2, 4], "nan": None, "inf": None, "name": "x", "none": None}
    assert type(out["metrics"]["accuracy"]) is float and type(out["count"]) is int
    wire.dumps(out)  # raises DumpError on any numpy type left


def _record_of_every_figure() -> tuple[dict, dict]:
    """A performance record holding every PERFORMANCE figure, each a distinct value
    of its type at its key path, and the values by attribute."""
    rec: dict = {}
    values = {}
    for i, f in enumerate(PERFORMANCE):
        value = {float: 1.5 + i, int: 10 + i, str: f"text {i}", bool: i % 2 == 0,
                 list: [float(i), i + 0.5]}[f.type]
        place = rec
        for part in f.key[:-1]:
            place = place.setdefault(part, {})
        place[f.key[-1]] = value
        values[f.attr] = tuple(value) if f.type is list else value
    return rec, values


def test_the_field_table_names_each_figure_once():
    for attr in ("attr", "key", "label", "column"):
        named = [getattr(f, attr) for f in PERFORMANCE + NUMERICS if getattr(f, attr) is not None]
        assert len(named) == len(set(named)), f"two fields share a {attr}"


def test_every_figure_travels_record_to_result_file_and_back():
    """Whatever the table holds, a new row included: the typed record reads it from
    the record, the result file writes it under its label (strict JSON) and its
    reader gives back the same point."""
    rec, values = _record_of_every_figure()
    point = PerfPoint.from_record(jsonable(rec), outcome="passed")
    assert {f.attr: getattr(point, f.attr) for f in PERFORMANCE} == values
    entry = json.loads(json.dumps(point.as_result(), allow_nan=False))
    assert entry["Status"] == "passed"
    assert {f.label for f in PERFORMANCE if f.label} <= entry.keys()
    again = PerfPoint.from_result(entry)
    for f in PERFORMANCE:
        assert getattr(again, f.attr) == (values[f.attr] if f.label else f.empty), f.attr


def test_a_failed_item_s_partial_record_reads_as_not_measured():
    point = PerfPoint.from_record({"batch_size": 4, "latency_ms": "garbled", "qps": "fast",
                                   "energy": {"unavailable": "no counter"}},
                                  outcome="error", message="the worker died")
    assert (point.batch_size, point.qps, point.p99, point.window_qps) == (4, None, None, ())
    assert point.energy_unavailable == "no counter" and point.qps_per_watt is None
    entry = point.as_result()
    # ByteMLPerf's core figures are written as missing; a scenario's own only where measured.
    assert entry["QPS"] is None and "Window QPS" not in entry and "Avg Watts" not in entry
    assert entry["Energy Unavailable"] == "no counter" and entry["Message"] == "the worker died"


def test_a_mistaken_table_row_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="field p95: type <class 'dict'> is none of"):
        Field("p95", ("latency_ms", "p95"), "P95 Latency", type=dict)
    with pytest.raises(ValueError, match="field p95: written='sometimes'; say 'always'"):
        Field("p95", ("latency_ms", "p95"), "P95 Latency", written="sometimes")
