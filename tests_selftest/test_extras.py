"""A missing framework or compiler is an error naming the extra that brings it;
any other missing module stays the ImportError it was. (tests_wheel/ checks the
same in a venv with no framework at all.)"""
from __future__ import annotations

import sys

import pytest

from backends.registry import BackendEntry
from xpuperf.extras import MissingExtra, pip_hint, require


def test_a_missing_framework_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import now fails
    with pytest.raises(MissingExtra) as missing:
        require("diffusers", "sd-unet's builder")
    assert str(missing.value) == ("xpuperf[diffusers] is needed for sd-unet's builder (no module "
                                  "'diffusers'): pip install 'xpuperf[diffusers]'")


def test_another_missing_module_is_left_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "not_an_extra_module", None)
    with pytest.raises(ModuleNotFoundError) as missing:
        require("not_an_extra_module", "nothing")
    assert not isinstance(missing.value, MissingExtra)


def test_a_backend_without_its_own_hint_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert BackendEntry("OPENVINO", "backends.openvino").missing() == \
        "missing Python module(s) openvino; pip install 'xpuperf[openvino]'"
    assert pip_hint(["onnx", "tvm", "onnxruntime"]) == "pip install 'xpuperf[onnx,tvm]'"
