"""report.html and compare.html in a real browser (headless Chromium): the charts
drawn, sorting and filtering working, the table within a 1,400 px page, and no
script errors. Skipped where Chromium is not installed (.ci/setup installs it)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests_selftest.browser import Page, chromium
from tests_selftest.test_report import INFO, TEMPLATES, llm_recs, perf_recs_of, records
from tests_selftest.test_report_compare import write_run
from xpuperf.report import render_compare, render_html, write_reports
from xpuperf.report.compare import compare
from xpuperf.report.ops import op_table
from xpuperf.report.summary import summarize
from xpuperf.report.published import load_published
from xpuperf.report.runs import load_run
from xpuperf.zoo import load_zoo

pytestmark = pytest.mark.skipif(chromium() is None, reason="Chromium is not installed "
                                "(apt-get install chromium; .ci/setup does)")
ROOT = Path(__file__).resolve().parents[1]
SHOWN_NAMES = """[...document.querySelectorAll("tbody.group")].filter(g => !g.hidden)
    .map(g => g.getAttribute("data-text"))"""
COUNT = 'document.querySelector("[data-count]").textContent'


def drawn(page: Page, selector: str) -> int:
    """How many elements ``selector`` matches that the browser laid out with a size."""
    return page.js(f"""[...document.querySelectorAll({selector!r})]
        .filter(e => {{ const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; }})
        .length""")


def assert_clean(page: Page) -> None:
    assert page.js('document.documentElement.getAttribute("data-ready")') == "1"
    assert page.errors == []
    assert page.js('document.documentElement.getAttribute("data-script-errors")') is None


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    with Page(write_reports(records(), folder, "CPU", INFO, TEMPLATES)[0]) as page:
        yield page


def test_report_page_draws_its_charts(report_page):
    assert_clean(report_page)
    assert drawn(report_page, "svg.panel") == 3 + 1  # a QPS panel per model, bert's latency
    assert drawn(report_page, "svg.panel polyline") == 2  # bert fp32 and fp16
    assert drawn(report_page, "svg.roofline") == 1


def test_report_table_sorts_by_a_clicked_column(report_page):
    # Failures first as written.
    assert report_page.js(SHOWN_NAMES) == ["bert-torch-squad-fp16", "resnet50-torch-imagenet-int8",
                                           "widedeep-tf-criteo-fp16", "bert-torch-squad-fp32"]
    qps = 'table.summary th:nth-child(9)'
    report_page.click(qps)
    assert report_page.js(f'document.querySelector("{qps}").getAttribute("aria-sort")') == \
        "ascending"
    # 470 then 224.5 QPS; the two without a QPS go last in either direction.
    assert report_page.js(SHOWN_NAMES)[:2] == ["bert-torch-squad-fp32", "bert-torch-squad-fp16"]
    report_page.click(qps)
    assert report_page.js(SHOWN_NAMES)[:2] == ["bert-torch-squad-fp16", "bert-torch-squad-fp32"]
    report_page.click("table.summary th:nth-child(1)")
    assert report_page.js(SHOWN_NAMES) == [
        "bert-torch-squad-fp16", "bert-torch-squad-fp32", "resnet50-torch-imagenet-int8",
        "widedeep-tf-criteo-fp16"]
    assert_clean(report_page)


def test_report_table_filters(report_page):
    report_page.select('[data-filter="status"]', "passed")
    assert report_page.js(SHOWN_NAMES) == ["bert-torch-squad-fp32"]
    assert report_page.js(COUNT) == "1 of 4 combinations shown"
    report_page.select('[data-filter="status"]', "")
    report_page.select('[data-filter="precision"]', "fp16")
    assert report_page.js(COUNT) == "2 of 4 combinations shown"
    report_page.select('[data-filter="family"]', "widedeep-tf")
    assert report_page.js(SHOWN_NAMES) == ["widedeep-tf-criteo-fp16"]
    # The family filter narrows the charts too.
    assert drawn(report_page, ".family") == 1
    report_page.select('[data-filter="family"]', "")
    report_page.select('[data-filter="precision"]', "")
    report_page.select('[data-filter="text"]', "resnet")
    assert report_page.js(SHOWN_NAMES) == ["resnet50-torch-imagenet-int8"]
    report_page.select('[data-filter="text"]', "")
    assert report_page.js(COUNT) == "4 of 4 combinations shown"
    assert_clean(report_page)


def test_whole_smoke_tier_fits_a_1400_px_page(tmp_path):
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    recs = [dict(r, family=c.model.family) for c in zoo.combinations()
            for r in perf_recs_of(c.model.name, c.dataset.name, c.precision, c.model.batch_sizes)]
    page_path = write_reports(recs + llm_recs(), tmp_path, "CPU", INFO, TEMPLATES)[0]
    with Page(page_path, width=1400) as page:
        assert_clean(page)
        assert page.js("document.querySelectorAll('tbody.group').length") == \
            len(zoo.combinations()) + 1
        # Every combination folded, the LLM one opened: its serving table fits too.
        page.js("document.querySelectorAll('details.combo').forEach(d => d.open = true)")
        assert drawn(page, "table.llm") == 1
        assert page.js("document.querySelector('table.llm').getBoundingClientRect().right") <= 1400
        # Every column, p99 and after included, is on the page: nothing scrolls sideways.
        right = "document.querySelector('table.summary').getBoundingClientRect().right"
        assert page.js(right) <= 1400
        assert page.js("document.documentElement.scrollWidth") <= 1400
        assert drawn(page, ".family") == len({m.family for m in zoo.models}) + 1  # the LLM's
        assert drawn(page, "svg.panel") >= len(zoo.models)


@pytest.fixture(scope="module")
def compare_page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    runs = [load_run(write_run(folder, "CPU")), load_run(write_run(folder, "TVM", 2.0))]
    path = folder / "compare.html"
    path.write_text(render_compare(compare(runs, published=load_published()), TEMPLATES))
    with Page(path) as page:
        yield page


def test_compare_page_draws_and_marks_published_rows(compare_page):
    assert_clean(compare_page)
    assert drawn(compare_page, "svg.panel") >= 4 and drawn(compare_page, "svg.roofline") == 1
    # bert fp32: one line per hardware in its panel.
    assert compare_page.js("""[...document.querySelectorAll('svg.panel')]
        .find(s => s.getAttribute('aria-label').startsWith('bert-torch fp32'))
        .querySelectorAll('polyline').length""") == 2
    # bert: STC, Graphcore FP8 and FP16, Moffett; resnet50: Graphcore x2, Moffett; widedeep: 2.
    assert drawn(compare_page, "tr.published") == 9
    assert compare_page.js("document.querySelector('tr.published .tag').textContent") == "published"


def test_compare_filters_by_hardware_and_sorts_by_its_figures(compare_page):
    compare_page.select('[data-filter="hardware"]', "TVM")
    assert drawn(compare_page, 'tr[data-hardware="CPU"]') == 0
    assert drawn(compare_page, 'tr[data-hardware="TVM"]') == 4
    assert drawn(compare_page, "tr.published") == 0
    compare_page.select('[data-filter="status"]', "failed")
    assert compare_page.js(COUNT) == "3 of 4 combinations shown"
    compare_page.select('[data-filter="status"]', "")
    compare_page.click("table.compare th:nth-child(6)")  # x CPU, TVM's ratios
    assert compare_page.js(SHOWN_NAMES)[:2] == ["bert-torch-squad-fp16", "bert-torch-squad-fp32"]
    compare_page.select('[data-filter="hardware"]', "Graphcore C600 (published)")
    assert drawn(compare_page, "tr.published") == 5 and drawn(compare_page, "tr[data-status]") == 0
    compare_page.select('[data-filter="hardware"]', "")
    assert_clean(compare_page)


def op_recs() -> list[dict]:
    def op(op_type: str, case: str, outcome: str, message: str = "") -> dict:
        return {"suite": "op", "op_type": op_type, "case": case, "hardware": "CPU",
                "outcome": outcome, "message": message,
                "category": "mismatch" if message else "pass"}
    return [op("Add", "add", "passed"), op("Add", "add_bcast", "failed", "mismatch: 1e-2"),
            op("Conv", "conv", "passed"), op("Erf", "erf", "failed", "run: no kernel"),
            op("Relu", "relu", "passed")]


def test_the_op_table_sorts_and_filters_failing_only(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(render_html(summarize(records()), "CPU", INFO, TEMPLATES, op_table(op_recs())))
    ops = """[...document.querySelectorAll("table.ops tbody.group")].filter(g => !g.hidden)
        .map(g => g.getAttribute("data-text"))"""
    count = 'document.querySelectorAll("[data-count]")[1].textContent'
    with Page(path) as page:
        assert_clean(page)
        assert page.js(ops) == ["add", "conv", "erf", "relu"]
        page.click("#ops input[data-filter=failing]")
        assert page.js(ops) == ["add", "erf"] and page.js(count) == "2 of 4 ops shown"
        page.click("#ops input[data-filter=failing]")
        page.click("table.ops th:nth-child(4)")  # pass rate, ascending
        assert page.js(ops)[:2] == ["erf", "add"]
        page.select("#ops [data-filter=text]", "con")
        assert page.js(ops) == ["conv"]
        # The summary's filter bar is its own: still all four combinations.
        assert page.js(COUNT) == "4 of 4 combinations shown"
        assert_clean(page)


def test_a_link_opens_its_folded_combination(report_page):
    target = "c-bert-torch-squad-fp16"
    assert report_page.js(f'document.getElementById("{target}").open') is False
    report_page.click(f'nav.toc a[href="#{target}"]')
    # The page opens it on the link's hashchange, which a busy host delivers late:
    # wait for it, up to 3 s.
    assert report_page.js(f"""new Promise(done => {{
        const start = Date.now();
        (function poll() {{
            const open = document.getElementById("{target}").open;
            if (open || Date.now() - start > 3000) done(open); else setTimeout(poll, 50);
        }})();
    }})""") is True
    assert drawn(report_page, f"#{target} table.figs") >= 1
    assert_clean(report_page)
