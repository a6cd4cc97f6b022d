"""xpuperf stands alone: a wheel built from this checkout, installed into a fresh
virtual environment (its core dependencies only: no framework), runs `xpuperf
compare` on two shipped reports folders and the contract kit on the backend
template, and names the extra to install for what it lacks. Outside README's test
command (pip may download the core dependencies): a step of .ci/run's lanes."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Two real sessions, what compare reads of them (session.json, the result JSONs):
# `pytest suites --hardware CPU --zoo-tier smoke -k "pointwise and not audit"` with
# --backend-option threads=1 (a) and threads=2 (b).
REPORTS = Path(__file__).resolve().parent / "runs"  # not reports/: .gitignore's
# What goes into the wheel (pyproject.toml's packages and readme).
SOURCES = ("pyproject.toml", "README.md", "xpuperf", "backends")


def run(args: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    # No PYTHONPATH: nothing of the checkout may be imported, only the wheel.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**clean, **env})


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv holding the wheel and its core dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            # Not the checkout's C reader, built in place: the wheel builds its own.
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        else:
            shutil.copy2(ROOT / name, source / name)
    # This environment's setuptools where it meets pyproject's floor, 74.1 (no download).
    ours = tuple(int(part) for part in version("setuptools").split(".")[:2])
    isolation = [] if ours < (74, 1) else ["--no-build-isolation"]
    ok(run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", *isolation, "-w", tmp / "dist", source], tmp))
    [wheel] = (tmp / "dist").glob("xpuperf-*.whl")
    venv.create(tmp / "venv", with_pip=True, system_site_packages=False)
    python = tmp / "venv" / "bin" / "python"
    ok(run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel], tmp))
    return python


def test_the_venv_has_no_framework_and_imports_the_wheel(installed, tmp_path):
    probe = ("import importlib.util as u, xpuperf; print(xpuperf.__file__); "
             "print([m for m in ('torch', 'tensorflow', 'onnxruntime', 'openvino', 'tvm', "
             "'diffusers', 'transformers') if u.find_spec(m)]); "
             "from xpuperf.generation import openai_client as c; print(c.READER is not None)")
    where, frameworks, reader = ok(run([installed, "-c", probe], tmp_path)).splitlines()
    assert Path(where).is_relative_to(installed.parents[1]), where
    assert frameworks == "[]"
    assert reader == str(sys.platform == "linux")  # the wheel built the LLM client's C reader


def test_compare_two_shipped_reports_folders(installed, tmp_path):
    out = tmp_path / "compare.html"
    said = ok(run([installed.parent / "xpuperf", "compare", REPORTS / "a", REPORTS / "b",
                   "--label", "threads1", "--label", "threads2", "-o", out], tmp_path))
    assert "(baseline threads1)" in said and str(out) in said
    page = out.read_text()
    assert "threads1" in page and "threads2" in page and "pointwise" in page


def test_contract_kit_passes_the_backend_template(installed, tmp_path):
    shutil.copytree(ROOT / "docs" / "backend_template" / "my_backend", tmp_path / "my_backend")
    done = run([installed, "-m", "xpuperf.contract_kit", "-p", "no:cacheprovider", "-q",
                "--hardware", "my_backend:MyBackend"], tmp_path, PYTHONPATH=str(tmp_path))
    assert re.search(r"\b\d+ passed", ok(done)), done.stdout[-3000:]
    assert not (tmp_path / "reports").exists()  # no zoo run: no report folder


def test_a_missing_framework_names_its_extra(installed, tmp_path):
    probe = """
from backends import registry
from xpuperf.extras import MissingExtra, require
print(registry.find("CPU").missing())
try:
    require("xpuperf.models.torch_fw", "bert-torch (torch model)")
except MissingExtra as e:
    print(e)
"""
    cpu, torch = ok(run([installed, "-c", probe], tmp_path)).splitlines()
    assert cpu == "missing Python module(s) onnxruntime; pip install 'xpuperf[onnx]'"
    assert torch == ("xpuperf[torch] is needed for bert-torch (torch model) (no module 'torch'): "
                     "pip install 'xpuperf[torch]'")
