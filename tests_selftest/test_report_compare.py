"""xpuperf compare: result files read back, runs joined, published figures, the command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests_selftest.sessions import run_session, tiny_zoo
from tests_selftest.test_report import INFO, TEMPLATES, perf_recs, records
from xpuperf.report import render_compare, write_reports
from xpuperf.report.bytemlperf import ResultError, result_json, row_from_result
from xpuperf.report.cli import main
from xpuperf.report.compare import CompareError, compare
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
    assert cmp.hardware == ["CPU", "TVM"] and len(cmp.lines) == 4
    # Failures first, then by model and precision.
    assert [ln.combination for ln in cmp.lines] == [
        "bert-torch-squad-fp16", "resnet50-torch-imagenet-int8", "widedeep-tf-criteo-fp16",
        "bert-torch-squad-fp32"]
    fp32 = cmp.lines[-1]
    cpu, tvm = fp32.cells
    assert (cpu.qps_ratio, tvm.qps_ratio) == (1.0, pytest.approx(2.0))
    assert tvm.p99_ratio is None  # no server or single-stream run to compare
    failed = cmp.lines[1].cells[1]
    assert failed.status == "failed" and failed.qps_ratio is None


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


def test_compare_bad_baseline_and_duplicate_hardware(tmp_path):
    cpu = load_run(write_run(tmp_path, "CPU"))
    with pytest.raises(CompareError, match="baseline 'GPU' is none of the runs' hardware"):
        compare([cpu], baseline="GPU")
    with pytest.raises(CompareError, match="more than one run of hardware CPU"):
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
    assert [(p.hardware, p.precision) for p in by_combo["bert-torch-squad-fp16"].published] == [
        ("Graphcore C600", "FP16")]
    assert {p.hardware for p in by_combo["bert-torch-squad-fp32"].published} == {
        "STC P920", "Graphcore C600", "Moffett S30"}
    html = render_compare(cmp, TEMPLATES)
    assert html.count('class="published"') == sum(len(ln.published) for ln in cmp.lines)
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
    [stc] = [p for p in line.published if p.hardware == "STC P920"]
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
    pytest.importorskip("openvino")
    folder = tiny_zoo(tmp_path)
    for hardware in ("CPU", "OPENVINO"):
        res = run_session(folder, hardware, "-k", "offline or compile or numerics")
        assert res.returncode == 0, res.stdout[-3000:]
    out = tmp_path / "compare.html"
    assert main(["compare", str(folder / "CPU"), str(folder / "OPENVINO"), "-o", str(out)]) == 0
    cpu = load_run(folder / "CPU")
    assert cpu.tier == "full" and cpu.zoo_version.startswith("zoo.yaml sha256:")
    assert cpu.rows[0].family == "bert" and cpu.rows[0].best is not None
    html = out.read_text()
    assert "tiny-bert-fake-fp32" in html and "&times;1" in html
