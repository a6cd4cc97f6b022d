"""The pytest plugin: options, parametrization from zoo.yaml, item ordering, and
the gate on each item's call; its fixtures are in xpuperf.fixtures, result
collection and the reports in xpuperf.results.

Collection reads zoo.yaml and the backend registry only; no framework is
imported until an item runs.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backends import registry
from xpuperf import gate, report_folder, safe_yaml
from xpuperf.conformance import expected
from xpuperf.records import ITEM_KEY, RECORD_KEY, SUITES, identity, jsonable
from xpuperf.worker import devices
from xpuperf.zoo import (DOMAINS, SCENARIOS, TIERS, Combination, PerfCase, Zoo, ZooError,
                         load_zoo)

AUDITS = ("accuracy", "caching", "seed")
# The suite each test function belongs to (the records' "suite" key).
SUITE_OF_TEST = {"test_compile": "compile", "test_metric": "metric",
                 "test_numerics": "numerics", "test_throughput": "performance",
                 **{f"test_audit_{a}": "audit" for a in AUDITS}}
MARKERS = {
    "accuracy": "task metric and numeric agreement with the reference",
    "performance": "throughput and latency",
    "compiler_coverage": "compile status, time and graph coverage",
    "audit": "LoadGen's integrity audits: accuracy in performance mode, caching, alternate seed",
    "smoke": "collected under --zoo-tier smoke (small shapes)",
    "op_conformance": "onnx's node test cases, one op variant each",
    "micro_perf": "micro-benchmarks: one op, copy or collective each (suites/micro_perf)",
    "compute": "micro-benchmarks of compute-bound ops (GEMM, convolution, activations)",
    "memory": "micro-benchmarks of memory-bound ops and copies",
    "llm_ops": "micro-benchmarks of LLM ops (attention, MoE)",
    "xccl": "micro-benchmarks of collectives on several ranks",
    **{d: f"models of the {d} domain" for d in DOMAINS},
}
DRIVERS = ("xpuperf", "mlperf")
DEFAULT_MAX_REGRESSION_PCT = 10.0
# The suites' fixtures, registered with this plugin.
pytest_plugins = ["xpuperf.fixtures"]


@dataclass
class PluginState:
    zoo: Zoo
    hardware: str
    entry: registry.BackendEntry
    options: dict[str, str]
    report_dir: Path
    driver: str = "xpuperf"
    # --scenarios: {scenario: pick} replacing the tier's; None keeps the tier's.
    scenarios: dict[str, str] | None = None
    baseline: gate.Baseline | None = None
    max_regression: float = DEFAULT_MAX_REGRESSION_PCT
    # The speed gate's settings, with --baseline or an A/B run; None: no speed gate.
    gate: gate.GateSettings | None = None
    # --ab-baseline-option: the A/B baseline's backend options (the candidate's
    # with these in place); None: no A/B run. --ab-baseline-python and -path:
    # the interpreter and import path its workers start with (None: this one's).
    ab_options: dict[str, str] | None = None
    ab_python: str | None = None
    ab_path: str | None = None
    # --devices: the device this process's backend workers are bound to; None: the backend's.
    device: str | None = None
    # The backend's known failures (xpuperf.conformance.expected): item name -> reason.
    expected_path: Path | None = None
    expected_label: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    # What the backend says this host offers: the file's conditional lines key on it.
    capabilities: dict[str, bool] = field(default_factory=dict)
    update_expected: bool = False
    # With --update-expected-failures: item name -> None (passed) or failure reason.
    outcomes: dict[str, str | None] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    report_error: str = ""


STATE = pytest.StashKey[PluginState]()
_SESSION = pytest.StashKey["BenchSession"]()  # the xpu fixture's (xpuperf.fixtures)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xpuperf")
    g.addoption("--hardware", default="CPU", help="backend to test (default CPU); see backends/")
    g.addoption("--zoo", default=None, metavar="PATH", help="zoo file (default <rootdir>/zoo.yaml)")
    g.addoption("--zoo-tier", default="full", choices=TIERS,
                help="full: the zoo's real shapes; smoke: small shapes for a quick run")
    g.addoption("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                help="an option passed to the backend (repeatable)")
    g.addoption("--backend-config", default=None, metavar="PATH",
                help="YAML file with a section of backend options per hardware name")
    g.addoption("--cache-dir", default=".xpuperf_cache", metavar="DIR",
                help="content-addressed cache of exported models and reference outputs")
    g.addoption("--data-dir", default="datasets", metavar="DIR",
                help="where the real datasets are; the shipped samples are used otherwise")
    g.addoption("--report-dir", default=None, metavar="DIR",
                help="where report.html and result JSONs go (default reports/<HARDWARE>)")
    g.addoption("--scenarios", default=None, metavar="LIST",
                help="comma-separated scenarios to run at all their batch sizes, or 'all' "
                     f"(default: the tier's selection; known: {', '.join(SCENARIOS)})")
    g.addoption("--devices", default=None, metavar="LIST",
                help="device indices to bind the backend to, e.g. 0,1,2,3: with -n N each "
                     "pytest-xdist worker takes one, round robin (xpuperf/worker/devices.py)")
    g.addoption("--precisions", default=None, metavar="LIST",
                help="comma-separated precisions to run every model at, instead of each "
                     "model's own list (e.g. fp32,tf32,fp16,bf16,fp8 on a GPU)")
    g.addoption("--driver", default="xpuperf", choices=DRIVERS,
                help="mlperf: also run every performance item under mlcommons-loadgen and "
                     "record its figures beside xpuperf's")
    g.addoption("--baseline", default=None, metavar="PATH",
                help="fail items that regressed against this pytest-benchmark JSON or "
                     "xpuperf reports folder (same hardware)")
    g.addoption("--expected-failures", default=None, metavar="PATH",
                help="the items this backend is known to fail, run as expected failures "
                     f"(default: {expected.FILE_NAME} beside the backend's module)")
    g.addoption("--update-expected-failures", action="store_true",
                help="rewrite that file from this run: add the items that failed, drop "
                     "those that passed or skipped, keep the lines of items that did not run")
    g.addoption("--item-timeout", default=None, type=float, metavar="SECONDS",
                help="time limit of one model item, past which the backend's worker process "
                     "is ended and the item fails (default: the model's or the tier's "
                     "timeout_s in the zoo)")
    g.addoption("--max-regression", default=None, type=float, metavar="PCT",
                help="with --baseline or an A/B run: the throughput drop in percent that "
                     "fails a performance item when it is significant (default "
                     f"{DEFAULT_MAX_REGRESSION_PCT:g}; README, 'The speed gate')")
    g.addoption("--ab-baseline-option", action="append", default=[], metavar="KEY=VALUE",
                help="A/B in one session: every performance item is also measured, in "
                     "interleaved blocks, with the backend's options changed to these "
                     "(repeatable); the item fails when it is significantly slower")
    g.addoption("--ab-baseline-python", default=None, metavar="PATH",
                help="A/B: the baseline's workers run this python (another installed SDK "
                     "version in another environment)")
    g.addoption("--ab-baseline-path", default=None, metavar="DIR",
                help="A/B: the baseline's workers import first from DIR (another checkout "
                     "of the backend or SDK)")
    g.addoption("--micro-workloads", default=None, metavar="DIR",
                help="micro-benchmark workload files (xpu-perf's <group>/<op>.json format) "
                     "instead of suites/micro_perf/workloads/<tier>/")
    g.addoption("--micro-launcher", default=None, metavar="COMMAND",
                help="how collectives' ranks are launched, {world_size} standing for their "
                     "count, e.g. 'srun -n {world_size}' (default: torchrun on this host)")
    g.addoption("--gate-inconclusive", default="fail", choices=gate.INCONCLUSIVE_EFFECTS,
                help="what a speed comparison still undecided after its re-measurements "
                     "does: fail the item (default) or let it pass, said in its record")


def _backend_options(config: pytest.Config, hardware: str) -> dict[str, str]:
    options: dict[str, str] = {}
    path = config.getoption("backend_config")
    if path:
        try:
            sections = safe_yaml.load(Path(path).read_text(), path) or {}
        except OSError as e:
            raise pytest.UsageError(f"--backend-config {path}: cannot read it: {e}") from None
        except safe_yaml.YamlError as e:
            raise pytest.UsageError(f"--backend-config {e}") from None
        section = sections.get(hardware, {}) if isinstance(sections, dict) else None
        if not isinstance(section, dict):
            raise pytest.UsageError(f"--backend-config {path}: section {hardware!r} must be a "
                                    "mapping of option names to values")
        options.update({str(k): str(v) for k, v in section.items()})
    return {**options, **_key_values(config, "backend_option")}


def _key_values(config: pytest.Config, option: str) -> dict[str, str]:
    """A repeatable KEY=VALUE option's values, checked."""
    out = {}
    for item in config.getoption(option):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise pytest.UsageError(f"--{option.replace('_', '-')} {item!r}: expected KEY=VALUE, "
                                    "e.g. threads=4")
        out[key] = value
    return out


def _expected_options(config: pytest.Config, entry: registry.BackendEntry) -> dict[str, Any]:
    """--expected-failures (or the file beside the backend) loaded and checked."""
    path = config.getoption("expected_failures")
    if path is None:
        spec = importlib.util.find_spec(entry.target.split(":", 1)[0])
        if spec is None or spec.origin is None:
            return {}
        path = Path(spec.origin).parent / expected.FILE_NAME
        installed = _installed_in(path)
        if installed and config.getoption("update_expected_failures"):
            raise pytest.UsageError(
                f"--update-expected-failures: the backend's list of known failures is {path}, "
                f"inside the installed packages ({installed}), which a reinstall replaces: "
                f"name a file of yours with --expected-failures PATH (e.g. --expected-failures "
                f"{expected.FILE_NAME})")
    path = Path(path).resolve()
    try:
        capabilities = entry.load()().capabilities()
        listed = expected.load(path, capabilities)
    except (OSError, ValueError) as e:  # ExpectedFileError, or a bad host profile
        raise pytest.UsageError(f"--expected-failures: {e}") from None
    # Messages name the file as a user in the repository would type it.
    label = path.relative_to(config.rootpath) if path.is_relative_to(config.rootpath) else path
    return {"expected_path": path, "expected_label": str(label), "expected": listed,
            "capabilities": capabilities,
            "update_expected": config.getoption("update_expected_failures")}


def _installed_in(path: Path) -> str | None:
    """The site-packages folder (pip's, the user's) that holds ``path``, if any."""
    import site
    import sysconfig

    folders = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    folders.update(site.getsitepackages(), [site.getusersitepackages()])
    resolved = path.resolve()
    return next((f for f in sorted(folders) if resolved.is_relative_to(Path(f).resolve())), None)


def _run_options(config: pytest.Config, hardware: str) -> dict[str, Any]:
    """--scenarios, --driver, --baseline and --max-regression, checked."""
    out: dict[str, Any] = {"driver": config.getoption("driver")}
    listed = config.getoption("scenarios")
    if listed:
        names = SCENARIOS if listed.strip() == "all" else [n.strip() for n in listed.split(",")]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise pytest.UsageError(f"--scenarios: unknown {', '.join(map(repr, unknown))} "
                                    f"(known: {', '.join(SCENARIOS)}, or all)")
        out["scenarios"] = {n: "all" for n in names}
    if config.getoption("devices"):
        try:
            out["device"] = devices.bound(devices.parse(config.getoption("devices")),
                                          os.environ.get("PYTEST_XDIST_WORKER"))
        except devices.DeviceListError as e:
            raise pytest.UsageError(str(e)) from None
    if out["driver"] == "mlperf" and importlib.util.find_spec("mlperf_loadgen") is None:
        raise pytest.UsageError("--driver mlperf needs MLPerf LoadGen's Python binding: "
                                "pip install mlcommons-loadgen")
    max_regression = config.getoption("max_regression")
    if max_regression is not None and not max_regression >= 0:
        raise pytest.UsageError(f"--max-regression must be a percentage >= 0, got {max_regression}")
    path = config.getoption("baseline")
    ab_changes = _key_values(config, "ab_baseline_option")
    ab_start = {k: config.getoption(k) for k in ("ab_baseline_python", "ab_baseline_path")}
    for key, value in ab_start.items():
        if value and not Path(value).exists():
            raise pytest.UsageError(f"--{key.replace('_', '-')} {value}: no such file or folder")
    ab = bool(ab_changes) or any(ab_start.values())
    if ab:
        out.update(ab_python=ab_start["ab_baseline_python"], ab_path=ab_start["ab_baseline_path"])
    if max_regression is not None and not (path or ab):
        raise pytest.UsageError("--max-regression needs --baseline PATH or --ab-baseline-option "
                                "KEY=VALUE to compare with")
    if path and ab:
        raise pytest.UsageError("--baseline and an A/B baseline (--ab-baseline-*) both give a "
                                "baseline: use one (A/B measures its baseline in this session)")
    if path:
        try:
            out["baseline"] = gate.load_baseline(path, hardware)
        except gate.BaselineError as e:
            raise pytest.UsageError(f"--baseline: {e}") from None
    if path or ab:
        out["max_regression"] = DEFAULT_MAX_REGRESSION_PCT if max_regression is None \
            else max_regression
        out["gate"] = gate.GateSettings(threshold_pct=out["max_regression"],
                                        inconclusive=config.getoption("gate_inconclusive"))
    return out


def _sigterm_as_interrupt() -> None:
    """SIGTERM ends the session as Ctrl-C does: pytest stops, the items' workers are
    ended, and the reports are written for what ran (CI systems stop a job so)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")
    signal.signal(signal.SIGTERM, interrupt)


# pyproject.toml's floor: pytest-benchmark before 5.3 takes --benchmark-json as an
# open file (a path given there breaks its save at the session's end, losing the
# reports), and before 5.3.1 its fixture breaks under pytest 9.2.
MIN_PYTEST_BENCHMARK = "5.3.1"


def _check_pytest_benchmark() -> None:
    """A usage error, with the fix, for a pytest-benchmark older than the floor: a
    checkout run on a machine's own python (PYTHONPATH=.) installs nothing."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version
    try:
        found = version("pytest-benchmark")
    except PackageNotFoundError:
        return  # not installed: performance items then ask for a fixture pytest names
    if Version(found) < Version(MIN_PYTEST_BENCHMARK):
        raise pytest.UsageError(f"pytest-benchmark {found} is older than the "
                                f"{MIN_PYTEST_BENCHMARK} xpuperf needs: "
                                f"pip install 'pytest-benchmark>={MIN_PYTEST_BENCHMARK}'")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config: pytest.Config) -> None:
    _check_pytest_benchmark()
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    try:
        entry = registry.find(config.getoption("hardware"))
        missing = entry.missing()
    except registry.UnknownBackend as e:
        raise pytest.UsageError(str(e)) from None
    hardware = entry.name if ":" not in entry.name else entry.load().name
    if missing:
        raise pytest.UsageError(f"--hardware {hardware} is unavailable here: {missing}")
    zoo_path = Path(config.getoption("zoo") or config.rootpath / "zoo.yaml")
    try:
        zoo = load_zoo(zoo_path, config.getoption("zoo_tier"))
        if config.getoption("precisions"):
            zoo = zoo.with_precisions(tuple(p.strip() for p in
                                            config.getoption("precisions").split(",")))
    except ZooError as e:
        raise pytest.UsageError(str(e)) from None
    # One marker per model family: -m matches markers exactly, so `-m bert` selects
    # bert-torch and bert-tf where `-k bert` would also take albert and roberta.
    for family in sorted({m.family for m in zoo.models}):
        config.addinivalue_line("markers", f"{family}: the {family} model family")
    report_dir = Path(config.getoption("report_dir") or Path("reports") / hardware)
    item_timeout = config.getoption("item_timeout")
    if item_timeout is not None and not item_timeout > 0:
        raise pytest.UsageError(f"--item-timeout must be a number of seconds > 0, got {item_timeout}")
    # A conftest that says XPUPERF_ZOO_RUN = False (the contract kit's: it tests a
    # backend, not the zoo) runs no zoo items: the report folder is left alone.
    zoo_run = all(getattr(p, "XPUPERF_ZOO_RUN", True) for p in config.pluginmanager.get_plugins())
    writes = zoo_run and not (hasattr(config, "workerinput") or config.option.collectonly)
    if writes:
        try:  # before --baseline is read: the baseline may be the folder's earlier run
            report_folder.check(report_dir)
        except report_folder.ReportFolderError as e:
            raise pytest.UsageError(f"--report-dir: {e}") from None
    _sigterm_as_interrupt()
    options = _backend_options(config, hardware)
    run = _run_options(config, hardware)
    if run.get("gate") is not None:
        run["gate"] = run["gate"].with_tier(zoo.gate)
        if "baseline" not in run:  # a gate without a stored baseline: A/B
            run["ab_options"] = {**options, **_key_values(config, "ab_baseline_option")}
        if zoo.tier == "smoke":
            config.issue_config_time_warning(pytest.PytestConfigWarning(
                "the smoke tier is not for gating: its items run too briefly to hold the "
                "speed gate's figures; gate with --zoo-tier gate (README, 'The speed gate')"),
                stacklevel=2)
    config.stash[STATE] = PluginState(zoo=zoo, hardware=hardware, entry=entry, options=options,
                                      report_dir=report_dir, **run,
                                      **_expected_options(config, entry))
    if zoo_run and not hasattr(config, "workerinput"):
        from xpuperf.results import ResultCollector
        # The collector locks and clears the folder when the first result comes.
        config.pluginmanager.register(ResultCollector(
            config.stash[STATE], not getattr(config.option, "benchmark_json", None)),
            "xpuperf-results")
    if hasattr(config.option, "benchmark_storage"):
        # Saved runs have one place, whatever --report-dir says (a session with
        # another report folder still finds them): .benchmarks/<HARDWARE> in the
        # checkout (pytest's rootdir), per hardware so that --benchmark-compare
        # never compares a CPU run with another backend's.
        if config.option.benchmark_storage == "file://./.benchmarks":
            config.option.benchmark_storage = \
                f"file://{config.rootpath / '.benchmarks' / hardware}"
        writes = not (hasattr(config, "workerinput") or config.option.collectonly)
        if writes and not config.option.benchmark_json:
            report_dir.mkdir(parents=True, exist_ok=True)
            # A path, as pytest-benchmark (from 5.3) takes the option: opened only
            # when it writes, so a session without benchmarks leaves no file.
            config.option.benchmark_json = report_dir / "benchmark.json"


# --------------------------------------------------------------------------- collection

def _marks(combo: Combination, tier: str) -> list:
    marks = [getattr(pytest.mark, combo.model.domain), getattr(pytest.mark, combo.model.family),
             pytest.mark.xdist_group(combo.group)]
    return marks + [pytest.mark.smoke] if tier == "smoke" else marks


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A user's zoo (--zoo) is about the user's models: onnx's per-op cases are
    collected with it only when test_ops.py is named on the command line."""
    if collection_path.name != "test_ops.py" or collection_path.parent.name != "compiler_coverage":
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return True if config.getoption("zoo") and collection_path not in named else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[STATE]
    tier = state.zoo.tier
    if "perf_case" in metafunc.fixturenames:
        metafunc.parametrize(("combo", "perf_case"), [
            pytest.param(p.combo, p, id=p.id, marks=_marks(p.combo, tier))
            for p in state.zoo.perf_cases(state.scenarios)])
    elif "combo" in metafunc.fixturenames:
        metafunc.parametrize("combo", [pytest.param(c, id=c.id, marks=_marks(c, tier))
                                       for c in state.zoo.combinations()])
    elif "op_case" in metafunc.fixturenames:
        from xpuperf.conformance.opconformance import case_index

        index = case_index(Path(metafunc.config.getoption("cache_dir")))
        # Ids drop onnx's "test_" prefix: test_op[add_bcast], not test_op[test_add_bcast].
        metafunc.parametrize("op_case", [pytest.param(OpCaseRef(case, op), id=case.removeprefix("test_"))
                                         for case, op in sorted(index.items())])


@dataclass(frozen=True)
class OpCaseRef:
    """An onnx node test case by id; the case itself is built in the worker that runs it."""

    id: str
    op_type: str


def _case(item: pytest.Item) -> tuple[Combination, dict[str, Any]] | None:
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    if "perf_case" in params:
        p: PerfCase = params["perf_case"]
        return p.combo, {"batch_size": p.batch_size, "scenario": p.scenario}
    if "combo" in params:
        name = getattr(item, "originalname", "")
        audit = name.removeprefix("test_audit_") if name.startswith("test_audit_") else None
        return params["combo"], {"audit": audit} if audit else {}
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run all items of one (model, precision) together, compile first, so that one
    compiled model serves them and is released before the next is built; within
    them, an offline item before the server items that load a fraction of its
    throughput. A tier without `audits:` runs none."""
    state = config.stash[STATE]
    models = {m.name: i for i, m in enumerate(state.zoo.models)}
    if state.zoo.audits is None:
        dropped = [i for i in items if SUITE_OF_TEST.get(getattr(i, "originalname", "")) == "audit"]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if i not in dropped]

    def order(item: pytest.Item) -> tuple:
        case = _case(item)
        if case is None:
            return (0,)
        combo, extra = case
        suite = SUITE_OF_TEST.get(item.originalname, "")
        item.user_properties.append((ITEM_KEY, identity(suite, combo, state.hardware, **extra)))
        scenario = extra.get("scenario")
        return (1, models[combo.model.name], combo.model.precisions.index(combo.precision),
                SUITES.index(suite) if suite in SUITES else len(SUITES), extra.get("batch_size", 0),
                SCENARIOS.index(scenario) if scenario in SCENARIOS else 0)

    items.sort(key=order)
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        if "op_case" in params:
            op: OpCaseRef = params["op_case"]
            item.user_properties.append((ITEM_KEY, {"suite": "op", "case": op.id,
                                                    "op_type": op.op_type,
                                                    "hardware": state.hardware}))
        if item.name in state.expected and any(k == ITEM_KEY for k, _ in item.user_properties):
            item.add_marker(pytest.mark.xfail(
                strict=True, reason=f"listed in {state.expected_label} (remove its line once "
                                    f"it passes): {state.expected[item.name]}"))


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    session = item.config.stash.get(_SESSION, None)
    case = _case(item)
    if session is None or case is None:
        return
    combo = case[0]
    following = _case(nextitem) if nextitem else None
    if following is None or following[0].group != combo.group:
        session.release_group(combo.group)
    if following is None or following[0].model.name != combo.model.name:
        session.release_model(combo.model.name)


# --------------------------------------------------------------------------- xdist

@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config):
    """-n N --dist loadgroup: each (model, precision) group whole on one worker
    (xpuperf.xdist_groups says why not pytest-xdist's own loadgroup)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xpuperf.xdist_groups import GroupScheduling

    state = config.stash[STATE]
    groups = {c.id: c.group for c in state.zoo.combinations()}
    groups.update((p.id, p.combo.group) for p in state.zoo.perf_cases(state.scenarios))

    def group_of(nodeid: str) -> str | None:
        # The id in brackets, as pytest_generate_tests made it; pytest-xdist before
        # pytest 9.2 may append "@<group>" after the bracket.
        opening, closing = nodeid.rfind("["), nodeid.rfind("]")
        return groups.get(nodeid[opening + 1:closing]) if 0 <= opening < closing else None
    return GroupScheduling(config, group_of)


# --------------------------------------------------------------------------- the gate

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail an item whose backend failed (a crash, a time-out, an exception in its
    worker) with that message alone: the suite's own traceback says nothing of it.
    With --baseline, fail a metric item that passed but dropped against it; the
    comparison is kept in its record either way. (Performance items are judged
    by the speed_gate fixture, which measures again while undecided.)"""
    from xpuperf.session import BackendFailure
    try:
        result = yield
        failure = ""
    except BackendFailure as e:
        failure = str(e)
    if failure:  # raised outside the except block: pytest would print both otherwise
        pytest.fail(failure, pytrace=False)
    state = item.config.stash[STATE]
    record = dict(item.user_properties).get(RECORD_KEY)
    if state.baseline is None or record is None:
        return result
    problems, comparison = gate.check_metric(record, state.baseline)
    if comparison:
        record["baseline"] = jsonable(comparison)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True, optionalhook=True)  # pytest-benchmark's hook
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any,
                                          machine_info: dict, compared_benchmark: dict):
    """Say plainly when the saved run had other backend options; and keep
    pytest-benchmark's own warning from ending the session in an INTERNALERROR
    (it names the storage relative to the working directory, and raises
    ValueError for a storage outside it: --benchmark-storage elsewhere)."""
    saved = (compared_benchmark.get("machine_info") or {}).get("xpuperf") or {}
    ours = machine_info.get("xpuperf") or {}
    if saved.get("backend_options", {}) != ours.get("backend_options", {}):
        benchmarksession.logger.warning(
            f"--benchmark-compare: the saved run had backend options "
            f"{saved.get('backend_options') or 'none'}, this one "
            f"{ours.get('backend_options') or 'none'}: their timings differ by that too")
    try:
        return (yield)
    except ValueError:
        return None  # only its message failed: the difference is said above or harmless


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    state = config.stash[STATE]
    machine_info["xpuperf"] = {"hardware": state.hardware, "tier": state.zoo.tier,
                               "backend_options": state.options,
                               **({"ab_baseline_options": state.ab_options}
                                  if state.ab_options is not None else {})}
