"""Records must cross pytest-xdist's wire (execnet), which takes plain Python only, and
every figure of the field tables must travel from a record to the result file and back."""
import json

import execnet.gateway_base as wire
import numpy as np
import pytest

from xpuperf.records import (ACCURACY, COMPILE, NUMERICS, PERFORMANCE, SYSTEM, WHERE, Field,
                             PerfPoint, jsonable)
from xpuperf.report.bytemlperf import result_json, row_from_result
from xpuperf.report.summary import summarize

TABLES = {"PERFORMANCE": PERFORMANCE, "COMPILE": COMPILE, "ACCURACY": ACCURACY,
          "NUMERICS": NUMERICS, "WHERE": WHERE, "SYSTEM": SYSTEM}


def test_numpy_scalars_become_plain_python_and_cross_the_wire():
    record = {"metrics": {"accuracy": np.float64(60.9), "auc": np.float32(0.5)},
              "count": np.int64(3), "flag": np.bool_(True), "ok": True, "shape": (np.int32(2), 4),
              "nan": np.float64("nan"), "inf": float("inf"), "name": "x", "none": None}
    out = jsonable(record)
    assert out == {"metrics": {"accuracy": 60.9, "auc": 0.5}, "count": 3, "flag": True, "ok": True,
                   "shape": [2, 4], "nan": None, "inf": None, "name": "x", "none": None}
    assert type(out["metrics"]["accuracy"]) is float and type(out["count"]) is int
    wire.dumps(out)  # raises DumpError on any numpy type left


def _record_of_every_figure(table: tuple[Field, ...] = PERFORMANCE) -> tuple[dict, dict]:
    """A record holding every figure of ``table`` that a record holds (a key), each a
    distinct value of its type at its key path, and the values by attribute."""
    rec: dict = {}
    values = {}
    for i, f in enumerate(table):
        if not f.key:
            continue
        value = {float: 1.5 + i, int: 10 + i, str: f"text {i}", bool: i % 2 == 0,
                 list: [float(i), i + 0.5] if f.item is float else [f"op{i}", "Erf"],
                 dict: {"mode": f"m{i}"}}[f.type]
        place = rec
        for part in f.key[:-1]:
            place = place.setdefault(part, {})
        place[f.key[-1]] = value
        values[f.attr] = tuple(value) if f.type is list else value
    return rec, values


@pytest.mark.parametrize("name", TABLES)
def test_the_field_table_names_each_figure_once(name):
    for attr in ("attr", "key", "label", "column"):
        named = [getattr(f, attr) for f in TABLES[name] if getattr(f, attr) not in (None, ())]
        assert len(named) == len(set(named)), f"two fields of {name} share a {attr}"


def test_a_label_is_one_figure_wherever_it_is_written():
    """A label two tables share is one field (the FLOPs per sample), so its reader
    and writer cannot disagree; Row's figures of COMPILE and ACCURACY are distinct."""
    by_label: dict = {}
    for f in PERFORMANCE + COMPILE + ACCURACY + NUMERICS:
        if f.label is not None:
            assert by_label.setdefault(f.label, f) == f, f.label
    attrs = [f.attr for f in COMPILE + ACCURACY]
    assert len(attrs) == len(set(attrs))


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
    with pytest.raises(ValueError, match="field p95: type <class 'set'> is none of"):
        Field("p95", ("latency_ms", "p95"), "P95 Latency", type=set)
    with pytest.raises(ValueError, match="field ops: item <class 'int'>; a list holds float"):
        Field("ops", ("fallback_ops",), "Fallback Ops", type=list, item=int)
    with pytest.raises(ValueError, match="field p95: written='sometimes'; say 'always'"):
        Field("p95", ("latency_ms", "p95"), "P95 Latency", written="sometimes")


def test_every_compile_and_accuracy_figure_travels_record_to_result_file_and_back():
    """Whatever COMPILE and ACCURACY hold, a new row included: the summary's Row
    reads it from the compile and metric records, the result file writes it under
    its label (strict JSON) and its reader gives back the same Row figures."""
    ident = {"combination": "m-d-fp32", "model": "m", "dataset": "d", "precision": "fp32",
             "outcome": "passed"}
    compile_rec, compile_values = _record_of_every_figure(COMPILE)
    metric_rec, metric_values = _record_of_every_figure(ACCURACY)
    (row,) = summarize([{**ident, "suite": "compile", **jsonable(compile_rec)},
                        {**ident, "suite": "metric", **jsonable(metric_rec)}])
    values = {**compile_values, **metric_values}
    assert {attr: getattr(row, attr) for attr in values} == values
    # The figures the code beside the tables composes travel from the Row on.
    row.compile_times_note, row.weights = "cold: this session", "m.pt"
    row.histogram = {"edges": [0.0, 1.0], "counts": [3]}
    doc = json.loads(json.dumps(result_json(row, "CPU", {}), allow_nan=False))
    assert {f.label for f in COMPILE if f.label} <= doc["Graph Compile"].keys()
    assert {f.label for f in ACCURACY if f.label} <= doc["Accuracy"].keys()
    again = row_from_result(doc)
    for f in COMPILE + ACCURACY:
        assert getattr(again, f.attr) == (getattr(row, f.attr) if f.label else f.empty), f.attr


def test_where_it_ran_travels_record_to_result_file_and_back():
    """WHERE's figures from the items' records (a later record's winning), SYSTEM's
    from the report info, each under its label; a row that says nothing of where
    writes none of them."""
    ident = {"combination": "m-d-fp32", "model": "m", "dataset": "d", "precision": "fp32",
             "outcome": "passed"}
    where, values = _record_of_every_figure(WHERE)
    (row,) = summarize([{**ident, "suite": "compile", "host": "earlier"},
                        {**ident, "suite": "metric", **where}])
    assert {f.attr: getattr(row, f.attr) for f in WHERE} == values
    system, _ = _record_of_every_figure(SYSTEM)
    doc = json.loads(json.dumps(result_json(row, "CPU", system)))
    assert {f.label: doc[f.label] for f in WHERE} == {f.label: values[f.attr] for f in WHERE}
    assert {f.label: doc[f.label] for f in SYSTEM} == {f.label: system[f.key[0]] for f in SYSTEM}
    again = row_from_result(doc)
    assert {f.attr: getattr(again, f.attr) for f in WHERE} == values
    (bare,) = summarize([{**ident, "suite": "compile"}])
    labels = {f.label for f in WHERE + SYSTEM}
    assert not labels & result_json(bare, "CPU", {}).keys()
