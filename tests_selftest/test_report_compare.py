"""xpuperf compare: result files read back, runs joined, published figures, the command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests_selftest.sessions import run_session, tiny_zoo
from tests_selftest.test_report import INFO, TEMPLATES, ident, perf_figures, perf_recs, records
from xpuperf.report import render_compare, write_reports
from xpuperf.report.bytemlperf import ResultError, result_json, row_from_result
from xpuperf.report.cli import main
from xpuperf.report.compare import DEFAULT_NOISE, CompareError, Ratio, compare
from xpuperf.report.published import PublishedError, load_published
from xpuperf.report.runs import load_run
from xpuperf.report.summary import summarize
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]


def write_run(folder: Path, hardware: str, scale: float = 1.0, **info) -> Path:
    """A reports folder of test_report's records, QPS times ``scale``, as ``hardware``."""
    recs = []
    for r in records():
        r = dict(r, hardware=hardware)
        if r.get("qps"):
            r["qps"] *= scale
            r["latency_ms"] = {k: v / scale for k, v in r["latency_ms"].items()}
        recs.append(r)
    write_reports(recs, folder / hardware, hardware, {**INFO, **info}, TEMPLATES)
    return folder / hardware


def test_result_document_reads_back_to_the_same_document():
    for row in summarize(records()):
        doc = json.loads(json.dumps(result_json(row, "CPU", INFO)))
        again = row_from_result(doc)
        assert result_json(again, "CPU", INFO) == doc, row.combination
        assert (again.best is None) == (row.best is None)
    nan_row = row_from_result(result_json(summarize(records())[1], "CPU", INFO))
    assert math.isnan(nan_row.diff["max_abs"]) and nan_row.diff["nan"] == 384


def test_a_document_of_another_writer_is_refused():
    with pytest.raises(ResultError, match="no Zoo Model, Precision: not a result file"):
        row_from_result({"Model": "BERT-TORCH-FP32", "Combination": "x", "Status": "passed",
                         "Performance": []})


def test_load_run_reads_a_reports_folder(tmp_path):
    run = load_run(write_run(tmp_path, "CPU"))
    assert (run.hardware, run.tier, run.zoo_version) == ("CPU", "smoke", INFO["zoo_version"])
    assert [r.combination for r in run.rows] == [r.combination for r in summarize(records())]
    bert = run.rows[0]
    assert (bert.best.batch_size, bert.best.qps) == (24, 224.5) and bert.family == "bert-torch"


@pytest.mark.parametrize("make, message", [
    (lambda d: d, "holds no <model>/result-<precision>.json"),
    (lambda d: d / "missing", "no such reports folder"),
])
def test_load_run_errors_name_the_folder(tmp_path, make, message):
    with pytest.raises(CompareError, match=message):
        load_run(make(tmp_path))


def test_compare_joins_by_combination_with_ratios_to_the_baseline(tmp_path):
    runs = [load_run(write_run(tmp_path, "CPU")), load_run(write_run(tmp_path, "TVM", 2.0))]
    cmp = compare(runs, baseline="CPU")
    assert cmp.labels == ["CPU", "TVM"] and len(cmp.lines) == 4
    # Failures first, then by model and precision.
    assert [ln.combination for ln in cmp.lines] == [
        "bert-torch-squad-fp16", "resnet50-torch-imagenet-int8", "widedeep-tf-criteo-fp16",
        "bert-torch-squad-fp32"]
    fp32 = cmp.lines[-1]
    cpu, tvm = fp32.cells
    # One ratio per batch size both runs measured, never best against best.
    assert [(r.batch_size, r.value) for r in cpu.qps_ratios] == [
        (bs, 1.0) for bs in (1, 4, 8, 16, 24)]
    assert [r.value for r in tvm.qps_ratios] == [pytest.approx(2.0)] * 5
    assert tvm.latency_ratios == {}  # no server or single-stream run to compare
    failed = cmp.lines[1].cells[1]
    assert failed.status == "failed" and failed.qps_ratios == []


def test_compare_a_combination_one_run_lacks(tmp_path):
    only = write_reports(perf_recs("bert-torch", "fp32", {1: 5.0}), tmp_path / "GPU", "GPU",
                         INFO, TEMPLATES)
    cmp = compare([load_run(write_run(tmp_path, "CPU")), load_run(only[0].parent)])
    fp16 = next(ln for ln in cmp.lines if ln.combination == "bert-torch-squad-fp16")
    assert fp16.cells[1].row is None and fp16.cells[1].status == "not run"


@pytest.mark.parametrize("info, message", [
    ({"tier": "full"}, r"the runs differ in tier: smoke \(CPU\), full \(TVM\)"),
    ({"zoo_version": "zoo.yaml sha256:ffffffffffff"}, "the runs differ in zoo version"),
])
def test_compare_refuses_other_tiers_or_zoos_unless_allowed(tmp_path, info, message):
    runs = [load_run(write_run(tmp_path, "CPU")), load_run(write_run(tmp_path, "TVM", **info))]
    with pytest.raises(CompareError, match=message + ".*pass --allow-mixed"):
        compare(runs)
    mixed = compare(runs, allow_mixed=True)
    assert mixed.mixed and "--allow-mixed" in render_compare(mixed, TEMPLATES)


def test_compare_bad_baseline_and_duplicate_labels(tmp_path):
    cpu = load_run(write_run(tmp_path, "CPU"))
    with pytest.raises(CompareError, match="baseline 'GPU' is none of the runs' labels"):
        compare([cpu], baseline="GPU")
    # The same folder twice: neither its name nor its parent tells the two apart.
    with pytest.raises(CompareError, match="more than one run labelled .*CPU .*own --label"):
        compare([cpu, cpu])
    with pytest.raises(CompareError, match="no runs"):
        compare([])


def test_published_figures_name_zoo_models_and_have_sources():
    figures = load_published()
    models = {m.name for m in load_zoo(ROOT / "zoo.yaml").models}
    assert {f.model for f in figures} <= models
    assert {f.hardware for f in figures} == {"STC P920", "Graphcore C600", "Moffett S30"}
    assert all(f.source and f.precision and f.qps > 0 for f in figures)
    ipu = [f for f in figures if f.hardware == "Graphcore C600" and f.model == "bert-torch"]
    assert [(f.precision, f.qps) for f in ipu] == [("FP8", 4464.0), ("FP16", 3134.0)]


def test_published_figures_go_beside_the_same_model_and_precision(tmp_path):
    cmp = compare([load_run(write_run(tmp_path, "CPU"))], published=load_published())
    by_combo = {ln.combination: ln for ln in cmp.lines}
    # Graphcore's FP16 bert row joins bert's fp16 line; the rest go to its first (fp32) line.
    assert [(p.figure.hardware, p.figure.precision)
            for p in by_combo["bert-torch-squad-fp16"].published] == [("Graphcore C600", "FP16")]
    assert {p.figure.hardware for p in by_combo["bert-torch-squad-fp32"].published} == {
        "STC P920", "Graphcore C600", "Moffett S30"}
    html = render_compare(cmp, TEMPLATES)
    assert html.count('class="published') == sum(len(ln.published) for ln in cmp.lines)
    assert "3134" in html and "published" in html and "not measured" in html


def test_measured_rows_show_qps_per_watt_and_published_rows_qps_per_tdp(tmp_path):
    """A measured row's QPS over its measured watts, a published row's over its
    card's rated TDP: each named for what it is, both read back from the files."""
    recs = []
    for r in records():
        if r["suite"] == "performance" and r["model"] == "bert-torch" and r["precision"] == "fp32":
            seconds = r["wall_s"]
            r = dict(r, energy={"joules": 50.0 * seconds, "seconds": seconds, "avg_watts": 50.0,
                                "j_per_query": None, "j_per_sample": 50.0 * seconds / r["samples"],
                                "method": "NVML total energy, cuda:0"})
        recs.append(r)
    write_reports(recs, tmp_path / "GPU", "GPU", INFO, TEMPLATES)
    cmp = compare([load_run(tmp_path / "GPU")], published=load_published())
    [line] = [ln for ln in cmp.lines if ln.combination == "bert-torch-squad-fp32"]
    best = line.cells[0].row.best
    assert best.qps == 224.5 and best.avg_watts == 50.0 and best.qps_per_watt == 224.5 / 50
    assert best.energy_method == "NVML total energy, cuda:0"
    [stc] = [p.figure for p in line.published if p.figure.hardware == "STC P920"]
    assert stc.tdp_w == 160 and stc.qps_per_tdp == pytest.approx(813.86 / 160)
    html = render_compare(cmp, TEMPLATES)
    assert "4.49 QPS/W measured (50 W)" in html
    assert "5.09 QPS/TDP (160 W rated)" in html and "16.9 QPS/TDP (185 W rated)" in html
    # A row without an energy counter shows no QPS/W; QPS/TDP is never shown as QPS/W.
    assert html.count("QPS/W measured") == 1


@pytest.mark.parametrize("text, message", [
    ("sources: 3", "needs a top-level 'sources:' list"),
    ("sources: [{vendor: v, hardware: h, title: t, figures: [], tdp_w: 150}]",
     r"tdp_w: a positive number of watts with its tdp_source, got 150"),
    ("sources: [{vendor: v, hardware: h, title: t, figures: [], tdp_w: 0, tdp_source: s}]",
     r"tdp_w: a positive number of watts"),
    ("sources: [{vendor: v, hardware: h, title: t, figures: [{model: m, precision: p}]}]",
     r"figures\[0\]: missing qps"),
    ("sources: [{vendor: v, hardware: h, title: t, figures: [{model: m, precision: p, qps: -1}]}]",
     "qps: a positive number"),
    ("sources: [{vendor: v, hardware: h, title: t, figures: [], colour: red}]",
     r"sources\[0\]: unknown key\(s\) colour"),
])
def test_published_file_errors(tmp_path, text, message):
    path = tmp_path / "published.yaml"
    path.write_text(text)
    with pytest.raises(PublishedError, match=message):
        load_published(path)


def test_compare_page_escapes_hostile_names(tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    recs = [dict(r, combination=f"bert-{hostile}", family=hostile)
            for r in perf_recs("bert-torch", "fp32", {1: 10.0, 2: 20.0})]
    write_reports(recs, tmp_path / "CPU", "CPU", INFO, TEMPLATES)
    html = render_compare(compare([load_run(tmp_path / "CPU")]), TEMPLATES)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_command_writes_the_page_and_refuses_with_a_message(tmp_path, capsys):
    cpu, tvm = write_run(tmp_path, "CPU"), write_run(tmp_path, "TVM", 0.5)
    out = tmp_path / "out" / "compare.html"
    assert main(["compare", str(cpu), str(tvm), "-o", str(out), "--baseline", "TVM"]) == 0
    assert "4 combinations of CPU, TVM (baseline TVM)" in capsys.readouterr().out
    html = out.read_text()
    assert "baseline <b>TVM</b>" in html and html.count('<tbody class="group" data-family') == 4
    full = write_run(tmp_path / "full", "GPU", tier="full")
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(cpu), str(full), "-o", str(out)])
    assert exit_.value.code == 2
    assert "the runs differ in tier: smoke (CPU), full (GPU)" in capsys.readouterr().err


def test_compare_two_real_sessions(tmp_path):
    """Two whole sessions of the tiny zoo, CPU and OPENVINO, written by the plugin
    and compared as a user does: the runs record their tier and zoo version."""
    folder = tiny_zoo(tmp_path)
    res = run_session(folder, "CPU", "-k", "offline or compile or numerics")
    assert res.returncode == 0, res.stdout[-3000:]
    # xpuperf's table, with its legend, is printed after pytest-benchmark's.
    out = res.stdout
    assert -1 < out.index("benchmark: 1 tests") < out.index("xpuperf: CPU, full tier") \
        < out.index("p99 ms @ load: server at its offered QPS"), out[-3000:]
    pytest.importorskip("openvino")
    res = run_session(folder, "OPENVINO", "-k", "offline or compile or numerics")
    assert res.returncode == 0, res.stdout[-3000:]
    out = tmp_path / "compare.html"
    assert main(["compare", str(folder / "CPU"), str(folder / "OPENVINO"), "-o", str(out)]) == 0
    cpu = load_run(folder / "CPU")
    assert cpu.tier == "full" and cpu.zoo_version.startswith("zoo.yaml sha256:")
    assert cpu.rows[0].family == "bert" and cpu.rows[0].best is not None
    html = out.read_text()
    assert "tiny-bert-fake-fp32" in html and "&times;1" in html


def perf_run(folder: Path, qps: dict, server: tuple | None = None, info: dict | None = None,
             **figures) -> Path:
    """A CPU reports folder of bert fp32's offline items at ``qps`` {bs: QPS} and,
    given (target QPS, p99 ms), a server item at bs 1; ``figures`` go into each record."""
    recs = [ident("performance", "bert-torch", "fp32", **perf_figures(bs, q), **figures)
            for bs, q in qps.items()]
    if server:
        target, p99 = server
        recs.append(ident("performance", "bert-torch", "fp32", batch_size=1, scenario="server",
                          qps=target, target_qps=target, valid=True, **figures,
                          latency_ms={"p50": p99 / 2, "p90": p99 / 1.5, "p95": p99 / 1.2,
                                      "p99": p99}))
    write_reports(recs, folder, "CPU", {**INFO, **(info or {})}, TEMPLATES)
    return folder


def test_two_runs_of_one_hardware_compare_labelled_by_folder(tmp_path, capsys):
    before = perf_run(tmp_path / "before" / "CPU", {1: 100.0, 4: 300.0})
    after = perf_run(tmp_path / "after" / "CPU", {1: 50.0, 4: 300.0})
    cmp = compare([load_run(before), load_run(after)])
    assert cmp.labels == ["before/CPU", "after/CPU"] and cmp.baseline == "before/CPU"
    cmp = compare([load_run(before, "old"), load_run(after, "new")], baseline="new")
    assert cmp.baseline == "new"
    old = cmp.lines[0].cells[0]
    assert [(r.batch_size, r.value) for r in old.qps_ratios] == [(1, 2.0), (4, 1.0)]
    with pytest.raises(CompareError, match="'CPU' is none of the runs' labels .* more than one "
                                           "run is of that hardware"):
        compare([load_run(before), load_run(after)], baseline="CPU")
    out = tmp_path / "cmp.html"
    assert main(["compare", str(before), str(after), "--label", "old", "--label", "new",
                 "-o", str(out)]) == 0
    assert "combinations of old, new (baseline old)" in capsys.readouterr().out
    html = out.read_text()
    assert '<span class="hw">old</span>' in html and 'data-hardware="new"' in html
    with pytest.raises(SystemExit):
        main(["compare", str(before), str(after), "--label", "old", "-o", str(out)])
    assert "1 --label for 2 folders" in capsys.readouterr().err


def test_ratios_are_per_batch_size_never_best_against_best(tmp_path):
    """bert's case: the candidate is 2.05x slower at bs 1, unchanged at its best
    batch size; best against best would say x0.98, the bs 1 ratio says x0.488."""
    base = perf_run(tmp_path / "a" / "CPU", {1: 205.0, 4: 600.0, 8: 1000.0})
    # bs 4 measured nothing finite: no ratio; bs 16 has no baseline: none either.
    slow = perf_run(tmp_path / "b" / "CPU", {1: 100.0, 4: math.nan, 8: 980.0, 16: 990.0})
    cell = compare([load_run(base), load_run(slow)]).lines[0].cells[1]
    assert [(r.batch_size, round(r.value, 3)) for r in cell.qps_ratios] == [(1, 0.488), (8, 0.98)]
    assert [r.grade for r in cell.qps_ratios] == ["worse-3", "same"]
    assert cell.worst_ratio == pytest.approx(100 / 205)


def test_latencies_are_compared_at_the_baselines_offered_load_only(tmp_path):
    base = perf_run(tmp_path / "a" / "CPU", {1: 100.0}, server=(50.0, 10.0))
    same_load = perf_run(tmp_path / "b" / "CPU", {1: 50.0}, server=(50.0, 30.0))
    # A slowed run offered a third of the load: its p99 is lower, and no "better".
    less_load = perf_run(tmp_path / "c" / "CPU", {1: 50.0}, server=(16.0, 3.05))
    cmp = compare([load_run(base), load_run(same_load), load_run(less_load)])
    _, same, less = cmp.lines[0].cells
    # Every latency of the field table's compared ones, p95 too, at the same point.
    assert {k: (pytest.approx(r.value), r.grade) for k, r in same.latency_ratios.items()} == {
        k: (3.0, "worse-3") for k in ("p50", "p90", "p95", "p99")}
    assert [(f.attr, value) for f, value, _ in same.latencies][2:] == [("p95", 25.0), ("p99", 30.0)]
    assert less.latency_ratios == {} and less.loaded.target_qps == 16.0
    assert "offered 16 QPS where the baseline's was 50" in less.latency_note
    assert all(r.scenario == "offline" for r in same.qps_ratios)  # a server QPS is its load
    html = render_compare(cmp, TEMPLATES)
    assert "latencies at other loads do not compare" in html
    assert '<span class="unit">p95</span> 25 <span class="ratio r-worse-3"' in html


def test_a_ratio_is_coloured_only_beyond_the_noise_of_its_figures(tmp_path):
    assert Ratio("offline", 1, 0.936, DEFAULT_NOISE).grade == "same"
    assert Ratio("offline", 1, 0.85, DEFAULT_NOISE).grade == "worse-1"
    assert Ratio("offline", 1, 0.6, DEFAULT_NOISE).grade == "worse-2"
    assert Ratio("offline", 1, 0.0187, DEFAULT_NOISE).grade == "worse-3"
    assert Ratio("offline", 1, 1.5, DEFAULT_NOISE).grade == "better-2"
    assert Ratio("server", 1, 0.5, DEFAULT_NOISE, lower_is_better=True).grade == "better-2"
    # The runs' own spreads set the noise: steady runs make x0.936 a change, noisy
    # ones make x0.8 none.
    steady = [load_run(perf_run(tmp_path / d / "CPU", {1: q}, spread=0.02, max_spread=0.1))
              for d, q in (("a", 100.0), ("b", 93.6))]
    ratio = compare(steady).lines[0].cells[1].qps_ratios[0]
    assert (ratio.noise, ratio.grade) == (0.02, "worse-1")
    noisy = [load_run(perf_run(tmp_path / d / "CPU", {1: q}, spread=0.3))
             for d, q in (("c", 100.0), ("d", 80.0))]
    assert compare(noisy).lines[0].cells[1].qps_ratios[0].grade == "same"
    html = render_compare(compare(steady), TEMPLATES)
    assert 'class="ratio r-worse-1"' in html and "noise &plusmn;2.0 %" in html


def test_published_rows_say_where_their_workload_differs(tmp_path):
    smoke = load_run(perf_run(tmp_path / "s" / "CPU", {1: 100.0}))
    fp32 = compare([smoke], published=load_published()).lines[0]
    assert fp32.published and all(
        "measured at the smoke tier's shapes; published at the full zoo's: not comparable"
        in p.warnings for p in fp32.published)
    graphcore = [p for p in fp32.published if p.figure.hardware == "Graphcore C600"]
    assert "published precision FP8; measured fp32" in graphcore[0].warnings
    full = load_run(perf_run(tmp_path / "f" / "CPU", {1: 100.0, 4: 200.0}, info={"tier": "full"}))
    rows = compare([full], published=load_published()).lines[0].published
    stc = [p for p in rows if p.figure.hardware == "STC P920"]
    assert stc[0].warnings == []  # the fp32 workload at the full tier: nothing differs
    html = render_compare(compare([smoke], published=load_published()), TEMPLATES)
    assert html.count('class="published mismatched"') == len(fp32.published)
    assert "&#9888; measured at the smoke tier" in html


def test_llm_runs_compare_by_scenario_and_concurrency(tmp_path):
    """Two servers' LLM runs side by side: output tokens/s against the baseline's
    at the same scenario and concurrency (c4 half as fast, c1 the same), TTFT and
    TPOT p99 of the single-stream run against the baseline's, a server run in no
    ratio (its rate is its search's), and the page shows tokens/s, not '-'."""
    from tests_selftest.test_report import llm_recs

    def run(name: str, c4_tokens: float, ttft_scale: float, hardware: str = "CPU") -> Path:
        recs = []
        for r in llm_recs():
            r = dict(r, hardware=hardware)
            if r.get("concurrency") == 4:
                r["output_tokens_per_s"] = c4_tokens
            if r["scenario"] == "single_stream":
                r["ttft_ms"] = {k: v * ttft_scale for k, v in r["ttft_ms"].items()}
            recs.append(r)
        recs.append(dict(recs[-1], scenario="server", output_tokens_per_s=50.0, target_rate=2.0))
        write_reports(recs, tmp_path / name / hardware, hardware, INFO, TEMPLATES)
        return tmp_path / name / hardware

    cmp = compare([load_run(run("a", 812.5, 1.0)), load_run(run("b", 406.25, 3.0))])
    [line] = cmp.lines
    base, other = line.cells
    assert [(r.point, round(r.value, 3), r.grade) for r in other.qps_ratios] == [
        ("offline c1", 1.0, "same"), ("offline c4", 0.5, "worse-2"),
        ("single stream", 1.0, "same")]
    assert [(name, value, ratio.grade) for name, value, ratio in other.llm_latencies] == [
        ("TTFT", 127.5, "worse-3"), ("TPOT", 4.25, "same")]
    assert [(name, ratio.value) for name, _, ratio in base.llm_latencies] == [
        ("TTFT", 1.0), ("TPOT", 1.0)]
    html = render_compare(cmp, TEMPLATES)
    assert '406 <span class="unit">tok/s</span><div class="sub">offline c4</div>' in html
    assert '<span class="unit">TTFT p99</span> 128 <span class="ratio r-worse-3"' in html
