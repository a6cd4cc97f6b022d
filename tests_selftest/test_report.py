"""Reports from realistic records: passed, failed compile, skipped metric, NaN, error-only."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from xpuperf.report import TEMPLATES, render_html, write_reports
from xpuperf.report.bytemlperf import result_json
from xpuperf.report.figures import figures
from xpuperf.report.plot import line_panel, styles
from xpuperf.report.ops import op_table
from xpuperf.report.summary import fmt_num, summarize, worst_diff
from xpuperf.report.terminal import table
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = "CPU"
INFO = {"tier": "smoke", "zoo_version": "zoo.yaml sha256:0123456789ab",
        "date": "2024-05-01 12:00 UTC", "host": "x86_64, 2 cores",
        "backend": {"name": "CPU", "onnxruntime": "1.17.1"}}
SCRIPT = "<script>alert('x')</script>"
NAN_MESSAGE = f"output start_logits has 12 NaN values {SCRIPT}"

MODELS = {
    "bert-torch": ("open_squad", "squad", "torch", "nlp"),
    "resnet50-torch": ("open_imagenet", "imagenet", "torch", "cv"),
    "widedeep-tf": ("open_criteo_kaggle", "criteo", "tf", "rec"),
}


def ident(suite: str, model: str, precision: str, outcome: str = "passed", message: str = "",
          **fields) -> dict:
    dataset, short, framework, domain = MODELS[model]
    return {"suite": suite, "combination": f"{model}-{short}-{precision}", "model": model,
            "dataset": dataset, "precision": precision, "hardware": HARDWARE,
            "framework": framework, "domain": domain, "weights": "seeded (seed 0)",
            "outcome": outcome, "message": message, **fields}


def compile_rec(model: str, precision: str, **kw) -> dict:
    fields = dict(status="ok", seconds_cold=3.21, seconds_cached=0.4,
                  cold_measured="this session", precision_used=precision, nodes_total=420,
                  nodes_native=399, coverage=399 / 420, fallback_ops=["Erf", "LayerNormalization"],
                  artifact_bytes=438_000_000, cached=False)
    fields.update(kw)
    return ident("compile", model, precision, **fields)


def diff(max_abs: float, cosine: float, nan: int = 0) -> dict:
    """DiffStats.as_dict() of one output of 384 values."""
    return {"mean_abs": max_abs / 20, "std_abs": max_abs / 15, "max_abs": max_abs,
            "max_rel": max_abs * 3, "mean_rel": max_abs / 9, "cosine": cosine,
            "nan": nan, "inf": 0, "reference_nonfinite": 0, "size": 384}


def numerics_rec(model: str, precision: str, outputs: dict, outcome: str = "passed",
                 message: str = "") -> dict:
    return ident("numerics", model, precision, outcome, message, outputs=outputs,
                 tolerance={"max_abs": 0.05, "mean_abs": 0.01, "max_rel": 0.5,
                            "min_cosine": 0.999},
                 histogram={"edges": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
                            "counts": [60000, 9000, 1200, 40]})


def perf_recs(model: str, precision: str, qps: dict[int, float]) -> list[dict]:
    return [ident("performance", model, precision, **perf_figures(bs, q)) for bs, q in qps.items()]


def perf_figures(bs: int, q: float) -> dict:
    return dict(batch_size=bs, scenario="offline", qps=q,
                latency_ms={"p50": 1000 * bs / q, "p90": 1100 * bs / q,
                            "p99": 1250 * bs / q, "mean": 1020 * bs / q},
                rounds=50, samples=50 * bs, wall_s=50 * bs / q)


def perf_recs_of(model: str, dataset: str, precision: str, batch_sizes) -> list[dict]:
    """Offline records of any zoo combination, QPS growing with the batch size."""
    return [{"suite": "performance", "combination": f"{model}-{dataset}-{precision}",
             "model": model, "dataset": dataset, "precision": precision, "hardware": HARDWARE,
             "outcome": "passed", "message": "", **perf_figures(bs, 100.0 * bs ** 0.5)}
            for bs in batch_sizes]


def records() -> list[dict]:
    return [
        # bert fp32: everything passed, real weights.
        compile_rec("bert-torch", "fp32", weights="bert.pt"),
        ident("metric", "bert-torch", "fp32", weights="bert.pt",
              metrics={"f1": 86.11, "exact_match": 78.02},
              reference_metrics={"f1": 86.14, "exact_match": 78.04}, primary="f1",
              drop=0.03, max_drop=0.5, seeded_weights=False, samples=10570,
              data_source="real"),
        numerics_rec("bert-torch", "fp32", {"start_logits": diff(2e-5, 0.9999999),
                                            "end_logits": diff(3e-5, 0.9999998)}),
        *perf_recs("bert-torch", "fp32", {1: 95.0, 4: 180.0, 8: 210.0, 16: 221.0, 24: 224.5}),
        # bert fp16: metric skipped (seeded weights), numerics NaN-failure.
        compile_rec("bert-torch", "fp16", seconds=5.5),
        ident("metric", "bert-torch", "fp16", "skipped",
              "seeded weights: the task metric would not mean anything"),
        numerics_rec("bert-torch", "fp16", {"start_logits": diff(math.nan, math.nan, nan=384),
                                            "end_logits": diff(0.02, 0.9991)},
                     "failed", NAN_MESSAGE),
        *perf_recs("bert-torch", "fp16", {1: 140.0, 4: 390.0, 8: 470.0}),
        # resnet int8: compile failed, the items that needed it errored with identity only.
        compile_rec("resnet50-torch", "int8", outcome="failed",
                    message="compile failed: QLinearConv unsupported", status="failed",
                    seconds=0.8, precision_used="int8", nodes_native=0, coverage=0.0,
                    fallback_ops=[], artifact_bytes=0),
        ident("metric", "resnet50-torch", "int8", "error", "compile failed: see compile"),
        ident("numerics", "resnet50-torch", "int8", "error", "compile failed: see compile"),
        ident("performance", "resnet50-torch", "int8", "error", "compile failed: see compile",
              batch_size=16, scenario="offline"),
        # widedeep fp16: nothing but an error record.
        ident("compile", "widedeep-tf", "fp16", "error", "backend crashed (signal 11)"),
    ]


@pytest.fixture(scope="module")
def rows():
    return summarize(records())


def by_combo(rows):
    return {r.combination: r for r in rows}


def test_rows_sorted_by_model_then_precision(rows):
    assert [r.combination for r in rows] == [
        "bert-torch-squad-fp32", "bert-torch-squad-fp16",
        "resnet50-torch-imagenet-int8", "widedeep-tf-criteo-fp16"]


def test_summarize_merges_passed_combination(rows):
    row = by_combo(rows)["bert-torch-squad-fp32"]
    assert row.status == "passed"
    assert {s: r.outcome for s, r in row.suites.items()} == {
        "compile": "passed", "metric": "passed", "numerics": "passed", "performance": "passed"}
    assert (row.primary, row.metric, row.reference, row.drop, row.max_drop) == \
        ("f1", 86.11, 86.14, 0.03, 0.5)
    assert row.seeded_weights is False and row.weights == "bert.pt"
    assert row.diff["max_abs"] == 3e-5 and row.diff["cosine"] == 0.9999998
    assert row.diff["std_abs"] == pytest.approx(3e-5 / 15)
    assert row.output_columns[6:] == ["size"]  # no non-finite value anywhere: no count columns
    assert [(p.batch_size, p.qps) for p in row.throughput] == \
        [(1, 95.0), (4, 180.0), (8, 210.0), (16, 221.0), (24, 224.5)]
    assert row.throughput[-1].p99 == pytest.approx(1250 * 24 / 224.5)
    assert (row.compile_seconds, row.compile_seconds_cached, row.precision_used,
            row.nodes_native, row.nodes_total) == (3.21, 0.4, "fp32", 399, 420)
    assert row.compile_times_note == "cold: this session"
    assert row.coverage == pytest.approx(0.95)
    assert row.fallback_ops == ("Erf", "LayerNormalization")
    assert row.artifact_bytes == 438_000_000 and row.histogram["counts"][-1] == 40
    assert row.messages == []


def test_skipped_metric_and_nan_numerics(rows):
    row = by_combo(rows)["bert-torch-squad-fp16"]
    assert row.status == "failed"
    assert row.suites["metric"].outcome == "skipped" and row.metric is None
    assert row.seeded_weights is True
    assert math.isnan(row.diff["max_abs"]) and math.isnan(row.diff["cosine"])
    assert (row.diff["nan"], row.diff["inf"]) == (384, 0)
    assert row.output_columns[:6] == ["max_abs", "mean_abs", "std_abs", "max_rel", "mean_rel",
                                      "cosine"]
    assert set(row.output_columns[6:]) == {"nan", "inf", "reference_nonfinite", "size"}
    assert row.suites["numerics"].messages == [NAN_MESSAGE]
    assert len(row.throughput) == 3


def test_failed_compile_and_error_only_rows(rows):
    resnet = by_combo(rows)["resnet50-torch-imagenet-int8"]
    assert resnet.status == "failed" and resnet.compile_status == "failed"
    assert resnet.suites["performance"].messages == ["bs16 offline: compile failed: see compile"]
    assert resnet.throughput == [] and resnet.perf[0].qps is None
    widedeep = by_combo(rows)["widedeep-tf-criteo-fp16"]
    # Its compile item errored (the backend crashed): it never reached a verdict.
    assert widedeep.status == "failed" and widedeep.compile_status == "error"
    assert widedeep.messages == ["compile: backend crashed (signal 11)"]
    assert widedeep.diff == {} and widedeep.perf == []


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_worst_diff_nan_wins_in_any_order(order):
    outs = [diff(0.01, 0.99), diff(math.nan, math.nan)]
    worst = worst_diff([outs[i] for i in order])
    assert math.isnan(worst["max_abs"]) and math.isnan(worst["cosine"])


def test_fmt_num():
    assert [fmt_num(v) for v in (None, math.nan, math.inf, 86.14, 2395899.9, 0, 3e-5)] == \
        ["-", "NaN", "inf", "86.14", "2.4M", "0", "3.00e-05"]
    assert fmt_num(1000.0, 3) == "1000" and fmt_num(0.9999998, 7) == "0.9999998"
    assert [fmt_num(v, 3) for v in (1e4, 12345, 47_000, 200_000, 1e5, 1e6, 3.2e9)] == \
        ["10k", "12k", "47k", "200k", "100k", "1M", "3.2G"]


def test_result_json_passed(rows):
    doc = result_json(by_combo(rows)["bert-torch-squad-fp32"], HARDWARE, INFO)
    assert doc["Model"] == "BERT-TORCH-FP32" and doc["Backend"] == "CPU"
    assert doc["Host Info"]["host"] == "x86_64, 2 cores" and doc["Status"] == "passed"
    gc = doc["Graph Compile"]
    assert {"Model", "Compile Duration", "Compile Precision", "Subgraph Coverage",
            "Fallback Ops", "Artifact Bytes", "Status"} <= gc.keys()
    assert (gc["Compile Duration"], gc["Compile Precision"], gc["Subgraph Coverage"]) == \
        (3.21, "fp32", 95.0)
    acc = doc["Accuracy"]
    assert (acc["F1 Score"], acc["Reference F1 Score"], acc["Exact Match"]) == (86.11, 86.14, 78.02)
    assert acc["Drop"] == 0.03 and acc["Weights"] == "bert.pt"
    assert acc["Max Diff"] == 3e-5 and acc["Cosine"] == 0.9999998
    assert {"Mean Diff", "Std Diff", "Max Rel-Diff", "Mean Rel-Diff"} <= acc.keys()
    perf = doc["Performance"]
    assert [p["BS"] for p in perf] == [1, 4, 8, 16, 24]
    assert perf[0]["QPS"] == 95.0
    assert perf[0]["P99 Latency"] == pytest.approx(1250 / 95.0)
    assert perf[0]["AVG Latency"] == pytest.approx(1020 / 95.0)


def test_result_json_is_strict_json_with_nan_and_failures(rows):
    nan_doc = result_json(by_combo(rows)["bert-torch-squad-fp16"], HARDWARE, INFO)
    text = json.dumps(nan_doc, allow_nan=False)
    assert json.loads(text)["Accuracy"]["Max Diff"] == "NaN"
    assert (nan_doc["Accuracy"]["NaN Count"], nan_doc["Accuracy"]["Inf Count"]) == (384, 0)
    assert nan_doc["Status"] == "failed" and f"numerics: {NAN_MESSAGE}" in nan_doc["Messages"]
    assert nan_doc["Accuracy"]["Metric Status"] == "skipped"
    failed = result_json(by_combo(rows)["resnet50-torch-imagenet-int8"], HARDWARE, INFO)
    assert failed["Graph Compile"]["Status"] == "failed"
    assert failed["Graph Compile"]["Messages"] == ["compile failed: QLinearConv unsupported"]
    assert failed["Performance"][0]["QPS"] is None
    assert failed["Performance"][0]["Status"] == "error"


def test_write_reports_writes_parsable_files(tmp_path):
    paths = write_reports(records(), tmp_path, HARDWARE, INFO, TEMPLATES)
    assert paths[0] == tmp_path / "report.html"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths[1:]) == [
        "bert-torch/result-fp16.json", "bert-torch/result-fp32.json",
        "resnet50-torch/result-int8.json", "widedeep-tf/result-fp16.json"]
    docs = {p.parent.name + "/" + p.name: json.loads(p.read_text()) for p in paths[1:]}
    assert docs["widedeep-tf/result-fp16.json"]["Status"] == "failed"
    assert docs["widedeep-tf/result-fp16.json"]["Messages"] == [
        "compile: backend crashed (signal 11)"]
    html = paths[0].read_text()
    for combo in ("bert-torch-squad-fp32", "bert-torch-squad-fp16",
                  "resnet50-torch-imagenet-int8", "widedeep-tf-criteo-fp16"):
        assert f'id="c-{combo}"' in html
    assert len(re.findall(r'<tr class="failed"', html)) >= 3
    assert html.count('class="panel"') == 3 and html.count("<polyline") == 2  # a panel per model
    assert html.count('class="roofline"') == 1 and 'class="summary sortable"' in html
    assert "QLinearConv unsupported" in html and "backend crashed (signal 11)" in html
    assert "tier <b>smoke</b>" in html and "zoo <b>zoo.yaml sha256:0123456789ab</b>" in html
    assert "onnxruntime" in html
    assert '<td class="bad">NaN</td>' in html and ">384 nan</span>" in html


def test_html_is_escaped(tmp_path):
    html = write_reports(records(), tmp_path, HARDWARE, INFO, TEMPLATES)[0].read_text()
    assert SCRIPT not in html and html.count("<script") == 2  # the page's own two
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_hostile_names_are_escaped_everywhere(tmp_path):
    recs = [dict(r, combination="bert-<img src=x onerror=alert(1)>", model="../../etc")
            for r in perf_recs("bert-torch", "fp32", {1: 10.0, 2: 20.0})]
    paths = write_reports(recs, tmp_path, f"GPU{SCRIPT}", {"host": SCRIPT}, TEMPLATES)
    html = paths[0].read_text()
    assert "<img" not in html and SCRIPT not in html and html.count("<script") == 2
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert all(tmp_path in p.parents for p in paths)


def test_error_only_combination_renders_alone(tmp_path):
    recs = [ident("compile", "widedeep-tf", "fp16", "error", "backend crashed (signal 11)")]
    paths = write_reports(recs, tmp_path, HARDWARE, {}, TEMPLATES)
    html = paths[0].read_text()
    assert "widedeep-tf-criteo-fp16" in html and "not measured" in html
    assert json.loads(paths[1].read_text())["Graph Compile"]["Status"] == "error"


def test_no_records_still_writes_a_page(tmp_path):
    assert write_reports([], tmp_path, HARDWARE, {}, TEMPLATES) == [tmp_path / "report.html"]
    assert "No results were recorded" in (tmp_path / "report.html").read_text()


def test_qps_panels_one_per_model_one_line_per_precision(rows):
    fig = figures([(r.precision, r) for r in rows], panel=lambda r: r.model)
    assert [f.family for f in fig.families] == ["bert-torch", "resnet50-torch", "widedeep-tf"]
    bert = fig.families[0]
    assert len(bert.panels) == 1 and bert.panels[0].count("<polyline") == 2  # fp32, fp16
    assert re.findall(r'class="tick[^"]*">([^<]+)<', bert.panels[0])[:5] == ["1", "4", "8", "16", "24"]
    assert "not measured" in fig.families[1].panels[0]  # the int8 compile failed
    assert [label for label, _ in fig.legend] == ["fp32", "fp16", "int8"]
    assert len({color for _, color in fig.legend}) == 3


def test_line_panel_goes_log_when_values_span_decades():
    style = styles(["a", "b"])
    svg = line_panel("m", [("a", style["a"], [(1, 90.0), (4, 200.0)]),
                           ("b", style["b"], [(1024, 1.2e6), (4096, 2.4e6)])])
    assert "QPS (log)" in svg
    assert re.findall(r'class="tick[^"]*">([^<]+)<', svg)[-6:] == ["100", "1000", "10k", "100k",
                                                             "1M", "10M"]
    linear = line_panel("m", [("a", style["a"], [(1, 90.0), (4, 200.0)])])
    assert "(log)" not in linear and linear.count("<polyline") == 1
    # One tooltip per line holds its every point (no title per marker).
    assert linear.count("<title>") == 1 and "<title>a: bs 1 90; bs 4 200 QPS</title>" in linear


def test_line_panel_single_point_and_zero_values():
    style = styles(["a"])["a"]
    one = line_panel("m", [("a", style, [(8, 50.0)])])
    assert "<polyline" not in one and one.count("<circle") == 1
    forced = line_panel("m", [("a", style, [(1, 0.0), (2, 0.0)])], log_y=True)
    assert "(log)" not in forced and forced.count("<polyline") == 1  # no log axis for zeros


def test_latency_panels_per_scenario():
    recs = [dict(r, scenario=scenario) for scenario in ("offline", "server")
            for r in perf_recs("bert-torch", "fp32", {1: 95.0, 4: 180.0})]
    recs[-1]["latency_ms"]["p99.9"] = 40.0
    fig = figures([(r.precision, r) for r in summarize(recs)], panel=lambda r: r.model)
    offline, server = fig.families[0].latency
    assert 'aria-label="offline: latency percentiles"' in offline
    assert "server" in server and "<title>" not in server  # the figures are the tables'
    # The whisker reaches p99.9 (40 ms), past the p99 tick.
    whisker = re.search(r'd="M\d+ \d+H(\d+)" class="whisker".*d="M(\d+) \d+v10" class="p99"', server)
    assert int(whisker[1]) > int(whisker[2]) > 0
    # One range per scenario: the batch size of the best throughput.
    assert offline.count('class="range"') == 1 and "bert-torch fp32 bs4" in offline


def test_roofline_points_and_measured_ceilings():
    recs = perf_recs("bert-torch", "fp32", {1: 100.0, 4: 200.0})
    for r in recs:
        r.update(flops_per_sample=2e9, bytes_per_sample=1e8, peak_flops=1e12,
                 peak_flops_source="measured: 512x512 GEMM")
    fig = figures([("fp32", r) for r in summarize(recs)], panel=lambda r: r.model)
    assert fig.roofline.count("<circle") == 1  # the best point only
    assert "bert-torch fp32 bs4: 400G FLOP/s at 20 FLOPs/B" in fig.roofline
    assert "stroke-dasharray" in fig.roofline and "fp32 peak 1TFLOP/s" in fig.roofline
    assert fig.ceilings == ["fp32 peak 1TFLOP/s: measured: 512x512 GEMM"]
    empty = figures([("fp32", r) for r in summarize(perf_recs("bert-torch", "fp32", {1: 9.0}))],
                    panel=lambda r: r.model)
    assert "no FLOP counts" in empty.roofline and empty.ceilings == []


def test_charts_stay_small_at_the_whole_smoke_tier():
    """Every zoo combination measured: no panel holds more lines than there are
    precisions, and no latency panel more ranges than its family's combinations."""
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    recs = [dict(r, family=c.model.family)
            for c in zoo.combinations()
            for r in perf_recs_of(c.model.name, c.dataset.name, c.precision, c.model.batch_sizes)]
    rows = summarize(recs)
    assert len(rows) == len(zoo.combinations()) > 100
    fig = figures([(r.precision, r) for r in rows], panel=lambda r: r.model)
    assert len(fig.families) == len({m.family for m in zoo.models})
    for fam in fig.families:
        assert all(svg.count("<polyline") <= 3 for svg in fam.panels)
        members = sum(r.family == fam.family for r in rows)
        assert all(svg.count('class="range"') <= members for svg in fam.latency)


def test_terminal_table(rows):
    text = table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("combination") and set(lines[1]) <= {"-", " "}
    col = lines[0].index("status")
    body = lines[2:lines.index("")]
    assert [line[col:col + 6] for line in body if not line.startswith("    !")] == \
        ["passed", "FAILED", "FAILED", "FAILED"]
    # The legend says what the columns mean, after the table.
    assert any("p99 ms @ load: server at its offered QPS" in line for line in lines[len(body):])
    assert "1:95 4:180 8:210 16:221 24:224" in text and "FAILED" in text
    assert "    ! compile: compile failed: QLinearConv unsupported" in lines
    assert "    ! numerics: output start_logits has 12 NaN values" in text
    assert "NaN +384 nan" in text
    assert "f1 86.11 (0.03)" in text
    assert table([]).splitlines()[0].startswith("combination")


def test_render_html_matches_rows(rows):
    html = render_html(rows, HARDWARE, INFO, TEMPLATES)
    assert html.count('<details id="c-') == len(rows)


def test_op_table_counts_pass_rates_and_failure_categories_per_op():
    def op(case: str, op_type: str, category: str, **kw) -> dict:
        return {"suite": "op", "case": case, "op_type": op_type, "hardware": HARDWARE,
                "category": category, "reason": f"{category} reason", **kw}

    table = op_table([op("test_add", "Add", "pass"), op("test_add_bcast", "Add", "mismatch"),
                      op("test_celu", "Celu", "conversion", expected_failure=True),
                      op("test_abs", "Abs", "pass"),
                      {"suite": "op", "case": "test_erf", "op_type": "Erf", "message": "setup: boom"},
                      compile_rec("bert-torch", "fp32")])
    assert [(r.op_type, r.cases, r.passed, r.expected) for r in table.rows] == [
        ("Abs", 1, 1, 0), ("Add", 2, 1, 0), ("Celu", 1, 0, 1), ("Erf", 1, 0, 0)]
    assert (table.cases, table.passed, table.expected, table.unexpected) == (5, 2, 1, 2)
    assert table.totals() == {"conversion": 1, "compilation": 0, "run": 0, "mismatch": 1}
    assert table.rows[1].failures == [("test_add_bcast", "mismatch", "mismatch reason")]
    assert table.rows[3].by_category == {"not run": 1}
    assert table.as_dict()["ops"]["Add"]["pass_rate"] == 0.5


def summary_table(html: str) -> str:
    start = html.index('<table class="summary')
    return html[start:html.index("</table>", start)]


DUMP = "Fatal Python error: Segmentation fault\n" + "\n".join(
    f'  File "/sdk/vendor_{i}.py", line {i}, in kernel_{i}' for i in range(60))
CRASH = f"the backend's worker process died of signal 11 while compiling; its last output:\n{DUMP}"


def crashed_group() -> list[dict]:
    """A worker crash handed to each item of its group, as xpuperf.session does."""
    return [compile_rec("bert-torch", "fp32", outcome="failed", message=CRASH, status="failed"),
            ident("metric", "bert-torch", "fp32", "error", f"setup: {CRASH}"),
            ident("numerics", "bert-torch", "fp32", "error", f"setup: {CRASH}"),
            *[ident("performance", "bert-torch", "fp32", "error", f"setup: {CRASH}",
                    batch_size=bs, scenario="offline") for bs in (1, 4, 8)]]


def test_a_crash_dump_is_shown_once_per_combination_and_folded():
    row = summarize(crashed_group())[0]
    assert sum(DUMP in m for m in row.messages) == 1
    assert sum("[the same output as under compile above, shown once]" in m
               for m in row.messages) == 5
    html = render_html([row], HARDWARE, INFO, TEMPLATES)
    assert html.count("vendor_59.py") == 1
    # Folded under its first line, and the summary lists first lines only.
    assert re.search(r'<details class="msg"><summary><span class="msg">compile failed|'
                     r'<details class="msg"><summary><span class="msg">the backend', html)
    summary = summary_table(html)
    assert "Fatal Python error" not in summary and "signal 11 while compiling" in summary


def test_an_expected_failure_shows_its_known_reason():
    reason = "listed in backends/cpu/expected_failures.txt (remove its line once it passes): " \
             "int8 Erf has no kernel"
    recs = [dict(compile_rec("bert-torch", "int8", outcome="xfailed", message="no Erf"),
                 expected_failure=True, expected_reason=reason),
            dict(ident("numerics", "bert-torch", "int8", "xfailed", "no compiled model"),
                 expected_failure=True, expected_reason=reason)]
    row = summarize(recs)[0]
    assert row.status == "xfailed" and row.expected_reasons == [reason]
    assert "    ~ expected: " + reason[:60] in table([row])
    html = render_html([row], HARDWARE, INFO, TEMPLATES)
    summary = summary_table(html)
    assert "known: listed in backends/cpu/expected_failures.txt" in summary
    doc = json.loads(json.dumps(result_json(row, HARDWARE, INFO)))
    assert doc["Expected Failure Reasons"] == {"compile": [reason], "numerics": [reason]}
    from xpuperf.report.bytemlperf import row_from_result
    assert row_from_result(doc).expected_reasons == [reason]


def llm_recs() -> list[dict]:
    base = {"suite": "generation", "combination": "tiny-llama-fp32", "model": "tiny-llama",
            "dataset": "prompts", "precision": "fp32", "hardware": HARDWARE,
            "outcome": "passed", "message": ""}
    lat = lambda p99: {"p50": p99 / 2, "p90": p99 / 1.2, "p99": p99, "mean": p99 / 2}  # noqa: E731
    return [dict(base, scenario="offline", concurrency=4, output_tokens_per_s=812.5,
                 ttft_ms=lat(90.0), tpot_ms=lat(9.0)),
            dict(base, scenario="offline", concurrency=1, output_tokens_per_s=240.0,
                 ttft_ms=lat(40.0), tpot_ms=lat(4.0)),
            dict(base, scenario="single_stream", output_tokens_per_s=230.0,
                 ttft_ms=lat(42.5), tpot_ms=lat(4.25))]


def test_llm_rows_of_the_summary_show_tokens_ttft_and_tpot():
    row = summarize(llm_recs())[0]
    assert row.llm_throughput["output_tokens_per_s"] == 812.5
    assert row.llm_latency["scenario"] == "single_stream"
    text = table([row])
    assert "812 tok/s offline c4" in text and "42.5 / 4.25 single_stream" in text
    html = render_html([row], HARDWARE, INFO, TEMPLATES)
    summary = summary_table(html)
    assert '812 <span class="unit">tok/s</span>' in summary
    assert '<span class="unit">TTFT</span> 42.5' in summary and "TPOT 4.25" in summary


def test_the_terminal_shows_the_pages_p99():
    recs = [*perf_recs("bert-torch", "fp32", {1: 100.0, 8: 400.0}),
            ident("performance", "bert-torch", "fp32", batch_size=1, scenario="server",
                  qps=50.0, target_qps=50.0, latency_ms={"p50": 5.0, "p90": 7.0, "p99": 12.5})]
    row = summarize(recs)[0]
    assert row.latency_point.p99 == 12.5
    assert "12.5 @1 50 QPS" in table([row])
    html = render_html([row], HARDWARE, INFO, TEMPLATES)
    summary = summary_table(html)
    assert 'data-v="12.5"' in summary and "@ 50 QPS" in summary


def test_the_page_has_a_table_of_contents_and_folded_combinations(tmp_path):
    html = render_html(summarize(records()), HARDWARE, INFO, TEMPLATES,
                       op_table([{"suite": "op", "op_type": "Add", "case": "add",
                                  "outcome": "passed", "message": ""}]))
    toc = html[html.index('<nav class="toc">'):html.index("</nav>")]
    for anchor in ("#summary", "#charts", "#combinations", "#ops", "#c-bert-torch-squad-fp16"):
        assert f'href="{anchor}"' in toc
    assert html.count('<details id="c-') == 4 and '<details id="c-bert-torch-squad-fp16" ' \
        'class="combo failed">' in html  # folded: no "open"


# What a CPU run records of the figures it could not measure (sentences of xpuperf's).
_NO_RESIDENT_NOR_ENERGY = {
    "device_resident": {"skipped": "CPU offers no device-resident path (Compiled.resident() is "
                        "None): a host backend's inputs are already where it computes, so end "
                        "to end is all there is"},
    "energy": {"unavailable": "no RAPL package zone under /sys/class/powercap: not an x86 Linux "
               "host, the powercap driver (intel_rapl) is not loaded, or a container or VM "
               "hides it"}}
# An audit record's figures as a real run's (xpuperf.measure.audits).
_AUDIT_FIGURES = {
    "accuracy": {"batch_size": 4, "logged_queries": 16, "mismatched_queries": 0,
                 "max_relative_diff": 0.0, "rtol": 1e-05},
    "caching": {"batch_size": 4, "basis": "cpu", "median_repeated_ms": 1.061069,
                "median_distinct_ms": 1.089567, "speedup": 0.03640231047373854,
                "max_speedup": 0.1, "rounds": 8, "rounds_over_bound": 0, "rounds_needed": 8,
                "queries": 64, "attempts": 1},
    "seed": {"batch_size": 4, "basis": "cpu", "median_default_ms": 1.0793485,
             "median_alternate_ms": 1.06139, "change": -0.016420686753576996,
             "max_change": 0.05, "rounds": 8, "rounds_slower": 0, "rounds_faster": 0,
             "rounds_needed": 8, "queries": 128, "attempts": 1}}
# A micro-benchmark case's record as a real run's (suites/micro_perf).
_MICRO = {
    "suite": "micro", "op": "gemm", "group": "compute", "precision": "fp32",
    "hardware": HARDWARE, "args": {"arg_type": "default", "dtype": "float32", "M": 64, "K": 64,
                                   "N": 64},
    "device": "cpu", "implementation": "framework (torch)", "latency(us)": 42.568999999999996,
    "mem_bw(GB/s)": 4.618572200427542, "calc_flops_power(tflops)": 0.04926477013789378,
    "flops": 2097152.0, "bytes": 196608, "arithmetic_intensity": 10.666666666666666,
    "timing": {"calls": 200, "latency_us": {"p10": 39.3, "p50": 42.57, "p90": 46.95,
                                            "p99": 99.46, "mean": 44.14, "min": 30.25},
               "clock": "host clock"},
    "share_of_peak": {"measured": {"share": 0.435, "bound": "compute",
                                   "source": "compute: the best fp32 GEMM of the op table",
                                   "peak_flops": 113248232312.2,
                                   "peak_bytes_per_s": 26013413356.9},
                      "datasheet": {"share": None, "why": "no datasheet row matches 'x86_64'"}},
    "correctness": {"passed": True, "rmse": 1.42e-07, "bound": 6.86e-07, "margin": 4.0,
                    "floor": 1.18e-07, "checked_elements": 16384, "nonfinite": 0,
                    "rule": "RMSE(result, fp64) <= margin * RMSE(cpu fp32, fp64) + floor"},
    "passed": True, "why": "", "notes": "", "seconds": 0.26, "outcome": "passed", "message": ""}


def test_report_of_a_whole_smoke_run_stays_under_1_mb(tmp_path):
    """Every smoke combination with its items' figures and audits, a fifth of the
    groups crashed (a 60-line dump handed to each of their items) and expected
    failures, the per-op items and micro-benchmark cases of a real smoke run:
    report.html stays under 1 MB (the full smoke run's was 1.9 MB, then 1.23 MB
    where this test, without audits, ops and micro cases, passed at well under)."""
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    recs = []
    for i, c in enumerate(zoo.combinations()):
        ident_ = {"combination": f"{c.model.name}-{c.dataset.name}-{c.precision}",
                  "model": c.model.name, "dataset": c.dataset.name, "precision": c.precision,
                  "hardware": HARDWARE, "family": c.model.family, "domain": c.model.domain,
                  "framework": c.model.framework}
        crashed = i % 5 == 0
        outcome, message = ("error", f"setup: {CRASH}") if crashed else ("passed", "")
        recs.append({**ident_, "suite": "compile", "outcome": "failed" if crashed else "passed",
                     "message": CRASH if crashed else "", "seconds_cold": 1.5,
                     "nodes_total": 300, "nodes_native": 300})
        recs.append({**ident_, "suite": "numerics", "outcome": outcome, "message": message,
                     "outputs": {f"out{k}": diff(1e-5, 0.99999) for k in range(3)},
                     # xpuperf.conformance.numerics' 12 decade bins
                     "histogram": {"edges": [0.0] + [10.0 ** e for e in range(-9, 3)],
                                   "counts": [0, 0, 3, 40, 300, 41, 0, 0, 0, 0, 0, 0]}})
        recs.append({**ident_, "suite": "metric", "outcome": "skipped" if not crashed else outcome,
                     "message": message or "seeded weights: the task metric would mean nothing"})
        for r in perf_recs_of(c.model.name, c.dataset.name, c.precision, c.model.batch_sizes):
            # The smoke tier's scenarios: offline at each batch size, the latency
            # scenarios at the smallest.
            for scenario in ("offline",) + (("single_stream", "server")
                                            if r["batch_size"] == min(c.model.batch_sizes)
                                            else ()):
                recs.append({**r, **ident_, "scenario": scenario, "outcome": outcome,
                             "message": message, "target_qps": 10.0, "spread": 0.05,
                             "stable": True, "peak_rss_mb": 512.0, **_NO_RESIDENT_NOR_ENERGY})
        # The three integrity audits of each, with the figures a real run records.
        recs += [{**ident_, "suite": "audit", "audit": audit, "item": f"test_audit_{audit}[{c}]",
                  "host": "vm", "duration_s": 0.1, "outcome": outcome, "message": message,
                  **figures} for audit, figures in _AUDIT_FIGURES.items()]
    # The per-op conformance suite's items and the micro-benchmarks' cases of a
    # real smoke run (about 1,850 and 38).
    recs += [{"suite": "op", "case": f"test_op{k}_{case}", "op_type": f"Op{k}",
              "hardware": HARDWARE, "category": "pass", "reason": "", "seconds": 0.011,
              "outcome": "passed", "message": ""} for k in range(185) for case in range(10)]
    recs += [{**_MICRO, "case": f"gemm-fp32-M{k}-K64-N64", "args": {**_MICRO["args"], "M": k}}
             for k in range(38)]
    size = len(write_reports(recs, tmp_path, HARDWARE, INFO, TEMPLATES)[0].read_bytes())
    print(f"report.html of {len(zoo.combinations())} smoke combinations, {len(recs)} records: "
          f"{size / 1e6:.2f} MB")
    assert size < 1_000_000


def test_the_figure_table_shows_each_measured_column_of_the_field_table():
    """A combination's performance table has a column per figure of
    xpuperf.records.PERFORMANCE that one of its items measured, and no other."""
    from xpuperf.records import ACCURACY, COMPILE, NUMERICS, PERFORMANCE
    from xpuperf.report import FORMATS

    assert {f.fmt for f in PERFORMANCE + COMPILE + ACCURACY + NUMERICS} <= FORMATS.keys(), \
        "a field names a format the page lacks"
    rec = ident("performance", "bert-torch", "fp32", scenario="offline", batch_size=4, qps=95.0,
                latency_ms={"p50": 10.0, "p99": 13.0},
                device_resident={"qps": 120.0, "device_ms": {"p50": 0.25}})
    [row] = summarize([rec])
    section = render_html([row], HARDWARE, INFO, TEMPLATES).split("<h4>Performance</h4>")[1]
    heads = re.findall(r"<th(?: title=\"[^\"]*\")?>([^<]*)</th>", section.split("</tr>")[0])
    measured = {"qps", "p50", "p99", "resident_qps", "device_p50"}
    assert heads == ["scenario", "bs"] + [f.column for f in PERFORMANCE if f.attr in measured] \
        + ["run"]  # every item passed: no outcome column (the suite's badge says so)
    assert "<td>120</td>" in section and "<td>0.25</td>" in section
    failed = render_html(summarize([{**rec, "outcome": "failed", "message": "slow"}]), HARDWARE,
                         INFO, TEMPLATES).split("<h4>Performance</h4>")[1]
    assert "<th>outcome</th>" in failed and 'title="slow">failed</span>' in failed
