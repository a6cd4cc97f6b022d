"""xpuperf's command-line options and the frozen run configuration they make.

A flag's value is converted and checked where argparse reads it (a bad one is
a usage error naming the flag); what depends on several flags, on the zoo or
on the backend is checked once in ``run_config``, at configure time. Everything
else reads the ``RunConfig`` in ``config.stash[RUN]``, never the raw options.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from backends import registry
from xpuperf import gate, report_folder, safe_yaml
from xpuperf.conformance import expected
from xpuperf.extras import pip_hint
from xpuperf.generation import settings as llm_settings, sweep as llm_sweep
from xpuperf.launcher import command as launcher_command
from xpuperf.worker import devices
from xpuperf.zoo import SCENARIOS, TIERS, Zoo, ZooError, load_zoo

DRIVERS = ("xpuperf", "mlperf")
DEFAULT_MAX_REGRESSION_PCT = gate.verdict.DEFAULT_THRESHOLD_PCT


@dataclass(frozen=True)
class RunConfig:
    """What this session runs and how, checked."""

    zoo: Zoo
    hardware: str
    entry: registry.BackendEntry
    options: dict[str, str]
    report_dir: Path
    # Whether this process writes the reports: a zoo run in the controller (not a
    # pytest-xdist worker, not the contract kit's session, which runs no zoo item).
    zoo_run: bool = True
    user_zoo: bool = False  # --zoo named a zoo of the user's
    cache_dir: Path = Path(".xpuperf_cache")
    data_dir: Path = Path("datasets")
    item_timeout: float | None = None  # --item-timeout; None: the zoo's
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
    expected: dict[str, expected.Listed] = field(default_factory=dict)
    # What the backend says this host offers: the file's conditional lines key on it.
    capabilities: dict[str, bool] = field(default_factory=dict)
    update_expected: bool = False
    # --ray-address: the Ray cluster each group's backend worker runs on
    # (xpuperf.worker.ray_worker); None: this machine.
    ray_address: str | None = None
    # The LLM items' --llm-* options: the server they measure (None: the
    # backend's engine), SLOs, arrivals, percentiles.
    llm: llm_settings.Settings = field(default_factory=llm_settings.Settings)
    # The micro-benchmarks (suites/micro_perf): --micro-workloads' folder (None:
    # the suite's own for the tier) and --micro-launcher's command (None: torchrun).
    micro_workloads: Path | None = None
    micro_launcher: str | None = None


RUN = pytest.StashKey[RunConfig]()


# --------------------------------------------------------------------------- one flag's value

def _converter(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert`` as an argparse type: its ValueError's message becomes argparse's,
    which names the flag ("argument --max-regression: ...")."""
    def typed(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    typed.__name__ = convert.__name__
    return typed


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r}: expected KEY=VALUE, e.g. threads=4")
    return key, value


def positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:
        raise ValueError(f"must be a number of seconds > 0, got {text}")
    return seconds


def count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def percentage(text: str) -> float:
    pct = float(text)
    if not pct >= 0:
        raise ValueError(f"must be a percentage >= 0, got {text}")
    return pct


def scenario_list(text: str) -> tuple[str, ...]:
    names = SCENARIOS if text.strip() == "all" else tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(SCENARIOS)}, or all)")
    return tuple(names)


def name_list(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(","))


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise ValueError(f"{text}: no such file or folder")
    return text


def launcher(text: str) -> str:
    launcher_command(1, text)  # its ValueError names the flag and the fix
    return text


def add_options(parser: pytest.Parser) -> None:
    g = parser.getgroup("xpuperf")
    g.addoption("--hardware", default="CPU", help="backend to test (default CPU); see backends/")
    g.addoption("--zoo", default=None, metavar="PATH", help="zoo file (default <rootdir>/zoo.yaml)")
    g.addoption("--zoo-tier", default="full", choices=TIERS,
                help="full: the zoo's real shapes; smoke: small shapes for a quick run")
    g.addoption("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                type=_converter(key_value), help="an option passed to the backend (repeatable)")
    g.addoption("--backend-config", default=None, metavar="PATH",
                help="YAML file with a section of backend options per hardware name")
    g.addoption("--cache-dir", default=".xpuperf_cache", metavar="DIR",
                help="content-addressed cache of exported models and reference outputs")
    g.addoption("--data-dir", default="datasets", metavar="DIR",
                help="where the real datasets are; the shipped samples are used otherwise")
    g.addoption("--report-dir", default=None, metavar="DIR",
                help="where report.html and result JSONs go (default reports/<HARDWARE>)")
    g.addoption("--scenarios", default=None, metavar="LIST", type=_converter(scenario_list),
                help="comma-separated scenarios to run at all their batch sizes, or 'all'; "
                     "LLM workloads run those of theirs it names "
                     f"(default: the tier's selection; known: {', '.join(SCENARIOS)})")
    g.addoption("--devices", default=None, metavar="LIST", type=_converter(devices.parse),
                help="device indices to bind the backend to, e.g. 0,1,2,3: with -n N each "
                     "pytest-xdist worker takes one, round robin (xpuperf/worker/devices.py)")
    g.addoption("--precisions", default=None, metavar="LIST", type=name_list,
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
    g.addoption("--item-timeout", default=None, type=_converter(positive_seconds),
                metavar="SECONDS",
                help="time limit of one model item, past which the backend's worker process "
                     "is ended and the item fails (default: the model's or the tier's "
                     "timeout_s in the zoo)")
    g.addoption("--max-regression", default=None, type=_converter(percentage), metavar="PCT",
                help="with --baseline or an A/B run: the throughput drop in percent that "
                     "fails a performance item when it is significant (default "
                     f"{DEFAULT_MAX_REGRESSION_PCT:g}; README, 'The speed gate')")
    g.addoption("--ab-baseline-option", action="append", default=[], metavar="KEY=VALUE",
                type=_converter(key_value),
                help="A/B in one session: every performance item is also measured, in "
                     "interleaved blocks, with the backend's options changed to these "
                     "(repeatable); the item fails when it is significantly slower")
    g.addoption("--ab-baseline-python", default=None, metavar="PATH",
                type=_converter(existing_path),
                help="A/B: the baseline's workers run this python (another installed SDK "
                     "version in another environment)")
    g.addoption("--ab-baseline-path", default=None, metavar="DIR", type=_converter(existing_path),
                help="A/B: the baseline's workers import first from DIR (another checkout "
                     "of the backend or SDK)")
    g.addoption("--ray-address", default=None, metavar="ADDRESS",
                help="run each (model, precision) group's backend worker on a node of this Ray "
                     "cluster ('auto': the one `ray start` joined here; host:port) that offers the "
                     "hardware's resource; with -n N --dist loadgroup, N at once "
                     "(docs/scale-out.md; pip install xpuperf[ray])")
    g.addoption("--micro-workloads", default=None, metavar="DIR", type=_converter(existing_path),
                help="micro-benchmark workload files (xpu-perf's <group>/<op>.json format) "
                     "instead of suites/micro_perf/workloads/<tier>/")
    g.addoption("--micro-launcher", default=None, metavar="COMMAND", type=_converter(launcher),
                help="how collectives' ranks (and a tensor_parallel LLM workload's) are "
                     "launched, {world_size} standing for their "
                     "count, e.g. 'srun -n {world_size}' (default: torchrun on this host)")
    g.addoption("--gate-inconclusive", default="fail", choices=gate.INCONCLUSIVE_EFFECTS,
                help="what a speed comparison still undecided after its re-measurements "
                     "does: fail the item (default) or let it pass, said in its record")
    llm = parser.getgroup("xpuperf LLM serving", "the LLM items (suites/llm; README, 'LLM serving')")
    llm.addoption("--llm-endpoint", default=None, metavar="URL",
                  help="measure this OpenAI-compatible server instead of the backend's engine "
                       "(the API's base, e.g. http://localhost:8000/v1); with --llm-model")
    llm.addoption("--llm-model", default=None, metavar="NAME",
                  help="the model's name on that server (its tokenizer too, unless --llm-tokenizer)")
    llm.addoption("--llm-api", default="completions", choices=("completions", "chat"),
                  help="/v1/completions (default) or /v1/chat/completions")
    llm.addoption("--llm-tokenizer", default=None, metavar="PATH",
                  help="the served model's tokenizer, a local directory or cached name: cuts "
                       "prompts to the workload's tokens, counts tokens a server gives no usage for")
    llm.addoption("--llm-request-timeout", default=60.0, type=_converter(positive_seconds),
                  metavar="SECONDS",
                  help="one request's limit, connect to last byte, against a server (default 60)")
    llm.addoption("--llm-ignore-eos", action="store_true",
                  help="ask the server for exactly the workload's output tokens (vLLM's and "
                       "SGLang's ignore_eos, min_tokens; others refuse the request)")
    llm.addoption("--llm-extra-body", default=None, metavar="JSON",
                  help="a JSON object of fields added to every request to the server, e.g. "
                       "'{\"chat_template_kwargs\": {\"enable_thinking\": false}}'")
    llm.addoption("--llm-api-key-env", default=None, metavar="NAME",
                  help="the environment variable holding the server's API key, sent as "
                       "'Authorization: Bearer' (the key is written nowhere)")
    llm.addoption("--llm-slo", default=None, metavar="ttft_ms=MS,tpot_ms=MS",
                  help="the SLOs of goodput and the server scenario, over the zoo's bounds")
    llm.addoption("--llm-arrivals", default="poisson", metavar="poisson|gamma:SHAPE|trace:PATH",
                  help="the server scenario's arrivals: Poisson (default), gamma gaps of that "
                       "shape (< 1 burstier), or a JSONL trace replayed")
    llm.addoption("--llm-percentiles", default=None, metavar="LIST",
                  help="latency percentiles beyond p50/p90/p99, e.g. 95,99.9")
    llm.addoption("--llm-sweep", default=None, type=_converter(llm_sweep.parse),
                  metavar="rate=R,R,..|concurrency=C,C,..|rate=auto|concurrency=auto",
                  help="one more item per workload, test_sla_sweep: its load at each point, "
                       "every point against the SLOs; auto searches the highest that meets them")
    llm.addoption("--llm-devices", default=1, type=_converter(count), metavar="N",
                  help="the accelerators the server uses: the sweep's tokens/s per device "
                       "(default 1)")
    llm.addoption("--llm-energy-devices", default=None, metavar="LIST",
                  help="the server's NVIDIA cards on this host (nvidia-smi's numbers, e.g. "
                       "0,1): their NVML energy counters over each timed window")


# --------------------------------------------------------------------------- the run's configuration

def backend_options(config: pytest.Config, hardware: str) -> dict[str, str]:
    """--backend-config's section for ``hardware``, with --backend-option over it."""
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
    return {**options, **dict(config.getoption("backend_option"))}


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


def _gate_options(config: pytest.Config, hardware: str, zoo: Zoo,
                  options: dict[str, str]) -> dict[str, Any]:
    """--baseline, the A/B flags and --max-regression, checked together."""
    out: dict[str, Any] = {}
    max_regression = config.getoption("max_regression")
    path = config.getoption("baseline")
    ab_changes = dict(config.getoption("ab_baseline_option"))
    ab_start = {k: config.getoption(k) for k in ("ab_baseline_python", "ab_baseline_path")}
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
                                        inconclusive=config.getoption("gate_inconclusive")
                                        ).with_tier(zoo.gate)
        if not path:  # a gate without a stored baseline: A/B
            out["ab_options"] = {**options, **ab_changes}
    return out


def _ray_address(config: pytest.Config) -> str | None:
    """--ray-address, checked: Ray installed, no A/B baseline beside it."""
    address = config.getoption("ray_address")
    if address is None:
        return None
    if importlib.util.find_spec("ray") is None:
        raise pytest.UsageError(f"--ray-address needs Ray: {pip_hint(['ray'])}")
    if any(config.getoption(k) for k in ("ab_baseline_option", "ab_baseline_python",
                                         "ab_baseline_path")):
        raise pytest.UsageError("--ray-address with an A/B baseline (--ab-baseline-*): the two "
                                "sides must share one machine; run the A/B without Ray")
    return address


def _llm_options(config: pytest.Config) -> llm_settings.Settings:
    """The --llm-* options, checked together (--llm-endpoint needs --llm-model; a
    trace is read now, not in the middle of the session)."""
    o = config.getoption
    try:
        return llm_settings.parse(o("llm_endpoint"), o("llm_model"), o("llm_api"),
                                  o("llm_tokenizer"), o("llm_request_timeout"),
                                  o("llm_ignore_eos"), o("llm_slo"), o("llm_arrivals"),
                                  o("llm_percentiles"), o("llm_sweep"), o("llm_devices"),
                                  energy_devices=o("llm_energy_devices"),
                                  extra_body=o("llm_extra_body"), api_key_env=o("llm_api_key_env"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def run_config(config: pytest.Config) -> RunConfig:
    """The options as one checked RunConfig; pytest.UsageError for what is wrong."""
    try:
        entry = registry.find(config.getoption("hardware"))
        missing = entry.missing()
    except registry.UnknownBackend as e:
        raise pytest.UsageError(str(e)) from None
    hardware = entry.name if ":" not in entry.name else entry.load().name
    if missing:
        raise pytest.UsageError(f"--hardware {hardware} is unavailable here: {missing}")
    zoo_path = Path(config.getoption("zoo") or config.rootpath / "zoo.yaml")
    # A conftest or plugin that says XPUPERF_ZOO_RUN = False (the contract kit's:
    # it tests a backend, not the zoo) runs no zoo items: no zoo is read (an
    # installed kit has none beside it) and the report folder is left alone.
    zoo_run = all(getattr(p, "XPUPERF_ZOO_RUN", True) for p in config.pluginmanager.get_plugins())
    try:
        zoo = load_zoo(zoo_path, config.getoption("zoo_tier")) if zoo_run else \
            Zoo(zoo_path, config.getoption("zoo_tier"), models=(), datasets={})
        if zoo_run and config.getoption("precisions"):
            zoo = zoo.with_precisions(config.getoption("precisions"))
    except ZooError as e:
        raise pytest.UsageError(str(e)) from None
    report_dir = Path(config.getoption("report_dir") or Path("reports") / hardware)
    if zoo_run and not (hasattr(config, "workerinput") or config.option.collectonly):
        try:  # before --baseline is read: the baseline may be the folder's earlier run
            report_folder.check(report_dir)
        except report_folder.ReportFolderError as e:
            raise pytest.UsageError(f"--report-dir: {e}") from None
    driver = config.getoption("driver")
    if driver == "mlperf" and importlib.util.find_spec("mlperf_loadgen") is None:
        raise pytest.UsageError("--driver mlperf needs MLPerf LoadGen's Python binding: "
                                + pip_hint(["mlperf_loadgen"]))
    listed = config.getoption("devices")
    scenarios = config.getoption("scenarios")
    micro = config.getoption("micro_workloads")
    options = backend_options(config, hardware)
    return RunConfig(
        zoo=zoo, hardware=hardware, entry=entry, options=options, report_dir=report_dir,
        zoo_run=zoo_run, user_zoo=bool(config.getoption("zoo")), cache_dir=Path(config.getoption("cache_dir")),
        data_dir=Path(config.getoption("data_dir")), item_timeout=config.getoption("item_timeout"),
        driver=driver, scenarios={n: "all" for n in scenarios} if scenarios else None,
        device=devices.bound(listed, os.environ.get("PYTEST_XDIST_WORKER")) if listed else None,
        ray_address=_ray_address(config),
        llm=_llm_options(config),
        micro_workloads=Path(micro) if micro else None,
        micro_launcher=config.getoption("micro_launcher"),
        **_gate_options(config, hardware, zoo, options), **_expected_options(config, entry))
