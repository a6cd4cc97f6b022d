"""The plugin as a user drives it: selection by -k, usage errors, lazy collection."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests_selftest.sessions import ZOO_SUITES, python_env
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "onnxruntime", "transformers", "keras", "onnx")


def pytest_run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def collected(*args: str, suites: tuple[str, ...] = ZOO_SUITES) -> list[str]:
    r = pytest_run(*suites, "--collect-only", "-q", "--zoo-tier", "smoke", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if "::" in line]


def test_k_selects_a_family_in_all_three_suites():
    # pytest's -k matches substrings of ids, so "bert" also selects albert, roberta, ...
    ids = collected("-k", "bert")
    assert ids and all("bert" in i.split("[", 1)[1] for i in ids)
    assert any("[bert-torch-" in i for i in ids) and any("[bert-tf-" in i for i in ids)
    suites = {i.split("/")[1] for i in ids}
    assert suites == {"accuracy", "performance", "compiler_coverage"}


def test_family_marker_selects_exactly_one_family():
    ids = collected("-m", "bert")
    assert ids and all(("[bert-torch-" in i or "[bert-tf-" in i) for i in ids)
    assert {i.split("/")[1] for i in ids} == {"accuracy", "performance", "compiler_coverage"}
    vae = collected("-m", "vae-encoder")
    assert vae and all("[vae-encoder-onnx-" in i for i in vae)


def test_k_selects_precision_and_batch_size():
    assert all("-int8" in i for i in collected("-k", "int8"))
    ids = collected("-k", "resnet and bs8")
    assert ids and all("[resnet50-" in i and "-bs8-" in i for i in ids)


def test_op_cases_are_items_named_by_their_onnx_case():
    ids = collected("-m", "op_conformance", suites=("suites",))
    assert len(ids) > 1500 and all("::test_op[" in i for i in ids)
    assert "suites/compiler_coverage/test_ops.py::test_op[add_bcast]" in ids
    assert collected("-k", "test_op and add_bcast", suites=("suites",)) == \
        ["suites/compiler_coverage/test_ops.py::test_op[add_bcast]"]


def test_markers_select_suites_and_domains():
    assert all("test_throughput" in i for i in collected("-m", "performance"))
    assert all("widedeep" in i for i in collected("-m", "rec"))


def test_items_of_one_model_and_precision_run_together():
    combos = [re.sub(r"-bs\d+-\w+$", "", i.split("[", 1)[1].rstrip("]")) for i in collected()]
    runs = [c for k, c in enumerate(combos) if k == 0 or c != combos[k - 1]]
    # each combination is one contiguous run
    assert len(runs) == len(set(runs)) == len(load_zoo(ROOT / "zoo.yaml", "smoke").combinations())


def test_collection_imports_no_framework():
    code = ("import sys, pytest\n"
            "rc = pytest.main(['-p', 'no:cacheprovider', 'suites', '--collect-only', '-q', "
            "'--zoo-tier', 'smoke'])\n"
            f"print('LOADED', [m for m in {FRAMEWORKS!r} if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in r.stdout, r.stdout[-2000:]


def test_broken_zoo_is_a_short_usage_error(tmp_path):
    zoo = (ROOT / "zoo.yaml").read_text().replace("dtype: int64}", "dtype: int65}", 1)
    bad = tmp_path / "zoo.yaml"
    bad.write_text(zoo)
    r = pytest_run("suites", "--collect-only", "--zoo", str(bad))
    assert r.returncode == 4  # pytest's usage error
    assert "models.bert-torch.inputs[0].dtype: unknown dtype 'int65'" in r.stderr
    assert f"{bad}:" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_unknown_hardware_lists_the_available_backends():
    r = pytest_run("suites", "--collect-only", "--hardware", "NOPE")
    assert r.returncode == 4
    assert "unknown --hardware 'NOPE'; available backends: " in r.stderr and "CPU" in r.stderr
    assert "docs/guide.md" in r.stderr and "docs/backend_template/" in r.stderr


def test_a_backend_whose_sdk_import_fails_points_at_the_guide(tmp_path):
    """A vendor's module importing its SDK at module level, the SDK absent: a usage
    error naming the module, the ImportError and the guide, not an INTERNALERROR."""
    (tmp_path / "vendor_backend.py").write_text("import vendor_sdk_that_is_absent\n")
    env = python_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "suites",
                        "--collect-only", "--hardware", "vendor_backend:Backend"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 4 and "INTERNALERROR" not in r.stdout + r.stderr, r.stdout[-2000:]
    assert "importing vendor_backend failed: ModuleNotFoundError: No module named " \
           "'vendor_sdk_that_is_absent'" in r.stderr
    assert "docs/guide.md" in r.stderr and "docs/backend_template/" in r.stderr


@pytest.mark.parametrize("hardware, message", [
    ("tests_selftest.fakes:NanBackendd", "--hardware 'tests_selftest.fakes:NanBackendd': module "
     "'tests_selftest.fakes' has no 'NanBackendd'; its backend classes: "),
    ("tests_selftest.fakez:NanBackend", "--hardware 'tests_selftest.fakez:NanBackend': module "
     "'tests_selftest.fakez' not found"),
    ("no_such_package.mod:Backend", "module 'no_such_package.mod' not found"),
])
def test_a_typo_in_module_colon_class_is_a_one_line_usage_error(hardware, message):
    r = pytest_run("suites", "--collect-only", "--hardware", hardware)
    assert r.returncode == 4, r.stdout + r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.strip()]
    assert message in line and "MODULE:CLASS" in line
    assert "INTERNALERROR" not in r.stdout + r.stderr


def test_malformed_backend_option_is_a_usage_error():
    r = pytest_run("suites", "--collect-only", "--backend-option", "threads")
    assert r.returncode == 4 and "expected KEY=VALUE" in r.stderr


def test_a_pytest_benchmark_older_than_the_floor_is_refused_with_the_fix(monkeypatch):
    """A checkout run on a machine's own python may find an older pytest-benchmark
    (a GPU image's): refused at start, not broken at the session's end."""
    import importlib.metadata

    from xpuperf import plugin

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "5.2.3")
    with pytest.raises(pytest.UsageError, match=r"pytest-benchmark 5\.2\.3 is older than the "
                                                r"5\.3\.1 xpuperf needs: pip install"):
        plugin._check_pytest_benchmark()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: plugin.MIN_PYTEST_BENCHMARK)
    plugin._check_pytest_benchmark()


class _Options:
    """A pytest.Config's getoption over a mapping: the options run_config's parts read."""

    def __init__(self, **values):
        self.values = values

    def getoption(self, name):
        return self.values.get(name)


def test_ray_address_is_refused_without_ray_and_beside_an_a_b_baseline(monkeypatch):
    import importlib.util

    from xpuperf import options

    assert options._ray_address(_Options(ray_address=None)) is None
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    with pytest.raises(pytest.UsageError, match=r"--ray-address needs Ray: "
                                                r"pip install 'xpuperf\[ray\]'"):
        options._ray_address(_Options(ray_address="auto"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "ray" else real_find_spec(name, *a))
    assert options._ray_address(_Options(ray_address="auto")) == "auto"
    with pytest.raises(pytest.UsageError, match="--ray-address with an A/B baseline"):
        options._ray_address(_Options(ray_address="auto", ab_baseline_option=[("threads", "2")]))
