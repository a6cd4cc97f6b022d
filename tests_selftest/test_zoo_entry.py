"""A zoo entry made the same way in the parent (xpuperf.session) and in the
group's worker (xpuperf.worker.host): the same dataset, artifact and data key,
and the same setup error naming zoo.yaml's line when one cannot be made."""
from __future__ import annotations

from pathlib import Path

import pytest

from backends.registry import find
from tests_selftest.sessions import conv_zoo
from xpuperf.cache import Cache, arrays_key, content_key
from xpuperf.models.entry import SetupError
from xpuperf.session import BenchSession
from xpuperf.worker.host import GroupHost
from xpuperf.zoo import load_zoo


def _both(folder: Path, data_dir: Path, name: str):
    zoo = load_zoo(folder / "zoo.yaml")
    parent = BenchSession(zoo, "CPU", find("CPU").load()(), {}, cache_dir=folder / "cache",
                          data_dir=data_dir)
    model = next(m for m in zoo.models if m.name == name)

    def worker() -> GroupHost:
        return GroupHost(lambda _note: None, "CPU", {}, str(folder / "zoo.yaml"), "full",
                         str(folder / "cache"), str(data_dir), name, "fp32")
    return parent, model, worker


@pytest.mark.parametrize("extra, key, made", [
    ("    dataset: broken\n", "dataset", "dataset"),
    ("    weights: bad.pt\n", "weights", "artifact"),
], ids=["dataset", "weights"])
def test_parent_and_worker_fail_alike_naming_the_zoo_line(tmp_path, extra, key, made):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    (tmp_path / "data" / "broken").mkdir(parents=True)
    (tmp_path / "data" / "broken" / "val_map.txt").write_bytes(b"\xff\xfe garbage")
    folder = conv_zoo(tmp_path, {"bad-conv": extra},
                      datasets="  broken: {id: broken, format: imagenet, path: broken}\n")
    parent, model, worker = _both(folder, tmp_path / "data", "bad-conv")
    with pytest.raises(SetupError) as in_parent:
        getattr(parent, made)(model)
    with pytest.raises(SetupError) as in_worker:
        worker()
    assert str(in_worker.value) == str(in_parent.value)
    assert "zoo.yaml:" in str(in_parent.value) and f"models.bad-conv.{key}:" in str(in_parent.value)


def test_parent_and_worker_make_the_same_artifact_and_data_key(tmp_path):
    folder = conv_zoo(tmp_path, {"clean-conv": ""})
    parent, model, worker = _both(folder, tmp_path, "clean-conv")
    host = worker()
    try:
        ds = parent.dataset(model)
        assert host.artifact.key == parent.artifact(model).key
        assert host.artifact.onnx_path() == parent.artifact(model).onnx_path()
        assert host.entry.data_key() == arrays_key(ds.feeds(range(len(ds))))
        # The reference's cache entry is keyed by the artifact and that data key.
        parent.reference(model)
        key = content_key(host.artifact.key, host.entry.data_key())
        assert (Cache(folder / "cache").root / "reference" / key).is_dir()
    finally:
        host.close()
        parent.close()
