"""The content-addressed cache: built once, shared, safe to read back."""
import numpy as np

from xpuperf.cache import (Cache, arrays_key, content_key, file_digest, package_modules,
                           source_digest)


def test_entry_is_built_once(tmp_path):
    cache, calls = Cache(tmp_path), []

    def build(folder):
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"x")

    first = cache.entry("onnx", "k1", build)
    second = cache.entry("onnx", "k1", build)
    assert first == second and len(calls) == 1
    assert (first / "model.onnx").read_bytes() == b"x"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_failed_build_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)

    def build(folder):
        (folder / "half").write_text("partial")
        raise RuntimeError("export crashed")

    try:
        cache.entry("onnx", "k2", build)
    except RuntimeError:
        pass
    assert not (tmp_path / "onnx" / "k2").exists()
    assert list((tmp_path / "onnx").iterdir()) == []


def test_arrays_round_trip_without_pickle(tmp_path):
    cache = Cache(tmp_path)
    out = cache.arrays("reference", "k3", lambda: {"a": np.arange(3.0), "b": np.ones((2, 2), np.int64)})
    again = cache.arrays("reference", "k3", lambda: {"a": np.zeros(1)})  # not recomputed
    assert np.array_equal(again["a"], np.arange(3.0)) and again["b"].dtype == np.int64
    assert out.keys() == again.keys()


def test_keys_change_with_content(tmp_path):
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})
    assert arrays_key({"x": np.zeros(3)}) != arrays_key({"x": np.zeros(4)})
    assert arrays_key({"x": np.zeros(3, np.float32)}) != arrays_key({"x": np.zeros(3, np.float64)})
    f = tmp_path / "w.bin"
    f.write_bytes(b"1")
    d1 = file_digest(f)
    f.write_bytes(b"2")
    assert file_digest(f) != d1


def test_source_digest_follows_the_code_without_importing_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "xpuperf_probe_builder.py"
    module.write_text("raise SystemExit('imported')\n")  # importing it would end the test
    first = source_digest("xpuperf_probe_builder")
    assert source_digest("xpuperf_probe_builder") == first
    module.write_text("raise SystemExit('imported, changed')\n")
    assert source_digest("xpuperf_probe_builder") != first
    assert source_digest("no_such_module_anywhere") != first  # absent: a digest still


def test_a_backend_package_digest_follows_every_module_in_it(tmp_path, monkeypatch):
    """A backend class in probe_backend/backend.py calls probe_backend/kernels.py:
    editing the helper must change the digest that keys its compiled models."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "xpuperf_probe_backend"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "backend.py").write_text("class Probe: pass\n")
    (package / "kernels.py").write_text("LANES = 8\n")
    modules = package_modules("xpuperf_probe_backend.backend")
    assert set(modules) == {"xpuperf_probe_backend.backend", "xpuperf_probe_backend",
                            "xpuperf_probe_backend.kernels"}
    first = source_digest(*modules)
    (package / "kernels.py").write_text("LANES = 16\n")
    assert source_digest(*modules) != first
    assert package_modules("xpuperf_probe_toplevel") == ["xpuperf_probe_toplevel"]
