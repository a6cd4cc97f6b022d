"""The ONNX framework adapter on a tiny zoo entry, and the issue-3 ONNX / LLM /
substructure entries of zoo.yaml: their full-tier configs build (on the meta
device: no memory, no compute) with the published parameter counts."""
from __future__ import annotations

import dataclasses
import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from xpuperf.cache import Cache
from xpuperf.datasets import fake
from xpuperf.models import BUILDERS, onnx_fw, torch_fw
from xpuperf.models.artifact import ModelArtifact, WeightsError
from xpuperf.zoo import ModelSpec, load_zoo

ROOT = Path(__file__).resolve().parents[1]
TINY = "conformer-encoder-onnx"  # float and bool inputs, convolutions, attention, BatchNorm

# Parameter counts of the models the full tier reproduces, as published (Hugging
# Face model cards and configs, YOLOv5's model summary).
PUBLISHED_PARAMETERS = {
    "gpt2": 124_439_808,
    "llama2-7b": 6_738_415_616,
    "chatglm2-6b": 6_243_584_000,
    "clip-onnx": 123_060_480,  # CLIP ViT-L/14 text encoder (Stable Diffusion 1.x)
    "unet-onnx": 859_520_964,  # Stable Diffusion 1.5 UNet
    "vae-encoder-onnx": 83_653_863,  # Stable Diffusion VAE (encoder and decoder both built)
    "videobert-onnx": 151_277_313,  # CLIP ViT-B/32
    "yolov5-onnx": 7_235_389,  # YOLOv5s v6.0
}


def zoo_spec(name: str, tier: str) -> ModelSpec:
    return next(m for m in load_zoo(ROOT / "zoo.yaml", tier).models if m.name == name)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return zoo_spec(TINY, "smoke")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Cache:
    return Cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def exported(spec, cache) -> ModelArtifact:
    return ModelArtifact(spec, cache, ROOT, calibration=lambda n: [])


@pytest.fixture(scope="module")
def feeds(spec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {t.name: fake.generate(rng, t, 3) for t in spec.inputs}  # not the export's batch of 2


def test_the_reference_is_onnxruntime_unoptimized_on_the_exported_file(exported, spec, feeds):
    import onnxruntime as ort

    session = onnx_fw.open_reference(exported.onnx_path())
    assert (session.get_session_options().graph_optimization_level
            == ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    reference = exported.reference(feeds)
    for name, value in onnx_fw.run(session, spec, feeds).items():
        np.testing.assert_array_equal(reference[name], value)


def test_the_reference_agrees_with_the_torch_module(exported, spec, feeds):
    reference = exported.reference(feeds)
    eager = torch_fw.run(exported.model(), spec, feeds)
    assert reference["memory"].shape == (3, spec.inputs[1].shape[1], spec.config["d_model"])
    np.testing.assert_allclose(reference["memory"], eager["memory"], atol=1e-4, rtol=1e-4)


def test_an_onnx_weights_file_is_used_as_is(exported, spec, cache, feeds, tmp_path):
    given = tmp_path / "given.onnx"
    shutil.copyfile(exported.onnx_path(), given)
    art = ModelArtifact(dataclasses.replace(spec, weights=str(given)), cache, ROOT, lambda n: [])
    assert art.weights == str(given) and not art.seeded
    assert Path(art.onnx_path()).read_bytes() == given.read_bytes()
    np.testing.assert_array_equal(art.reference(feeds)["memory"], exported.reference(feeds)["memory"])


def test_an_onnx_file_without_the_zoo_tensors_names_file_entry_and_tensor(exported, spec, cache, tmp_path):
    given = tmp_path / "given.onnx"
    shutil.copyfile(exported.onnx_path(), given)
    renamed = (dataclasses.replace(spec.inputs[0], name="features"), *spec.inputs[1:])
    art = ModelArtifact(dataclasses.replace(spec, weights=str(given), inputs=renamed), cache, ROOT,
                        lambda n: [])
    with pytest.raises(WeightsError, match=rf"{TINY}: cannot load weights {given}: .*no tensor named features"):
        art.model()


def test_a_corrupt_onnx_file_names_file_and_entry(spec, cache, tmp_path):
    given = tmp_path / "corrupt.onnx"
    given.write_bytes(b"\x08\xff\xff not protobuf")
    with pytest.raises(WeightsError, match=rf"{TINY}: cannot load weights {given}: .*not a readable ONNX file"):
        ModelArtifact(dataclasses.replace(spec, weights=str(given)), cache, ROOT, lambda n: []).model()


def test_videobert_prompts_keep_their_shape_and_serve_every_batch(cache):
    """The text input has no batch axis: the export keeps its [100, length] fixed,
    any batch of images is scored against the same prompts, and the FLOP count
    takes the text encoder once per batch, not once per sample."""
    import onnx

    from xpuperf.measure import flops

    spec = zoo_spec("videobert-onnx", "smoke")
    art = ModelArtifact(spec, cache, ROOT, calibration=lambda n: [])
    graph = onnx.load(str(art.onnx_path())).graph
    shapes = {t.name: [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]
              for t in (*graph.input, *graph.output)}
    assert shapes == {"image": ["batch", 3, 32, 32], "text": [100, 16], "output": ["batch", 100]}
    rng = np.random.default_rng(0)
    feeds = {t.name: fake.generate(rng, t, 3) for t in spec.inputs}  # not the export's batch of 2
    three = art.reference(feeds)["output"]
    one = art.reference({**feeds, "image": feeds["image"][2:]})["output"]
    assert three.shape == (3, 100)
    np.testing.assert_allclose(one[0], three[2], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(torch_fw.run(art.model(), spec, feeds)["output"], three, atol=1e-4, rtol=1e-4)
    cost1, cost4 = flops.count_file(art.onnx_path(), 1), flops.count_file(art.onnx_path(), 4)
    assert cost1.unknown == cost4.unknown == 0
    assert cost1.flops < cost4.flops < 2 * cost1.flops  # the 100 prompts dominate this tiny model


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_full_tier_builds_with_the_published_parameter_count(name):
    import torch

    spec = zoo_spec(name, "full")
    module, func = BUILDERS[spec.builder].split(":")
    with torch.device("meta"):  # a 7B model in no memory at all
        model = getattr(importlib.import_module(module), func)(spec.config, spec)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS[name]


def test_substructures_cover_every_structure_and_sequence_length():
    models = [m for m in load_zoo(ROOT / "zoo.yaml", "full").models if m.domain == "substructure"]
    seq_lens = {(m.family, m.inputs[0].shape[1]) for m in models if m.builder != "conv2d"}
    families = {"gru", "lstm", "encoder-layer", "decoder-layer"}
    assert seq_lens == {(f, n) for f in families for n in (128, 256, 512, 1024)}
    convs = {m.family: (m.config["groups"], m.config["kernel_size"]) for m in models if m.builder == "conv2d"}
    channels = {m.family: m.inputs[0].shape[1] for m in models if m.builder == "conv2d"}
    assert 1 < convs["group-conv"][0] < channels["group-conv"]
    assert convs["depthwise-conv"][0] == channels["depthwise-conv"]
    assert convs["pointwise-conv"] == (1, 1)


def test_chatglm_rotary_embedding_turns_half_of_each_head():
    import torch

    from xpuperf.models.chatglm import apply_rope, rope_cache

    x = torch.randn(2, 4, 6, 16)
    out = apply_rope(x, rope_cache(6, 8, x.device))
    torch.testing.assert_close(out[..., 8:], x[..., 8:])  # the second half passes through
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0])  # position 0: angle 0
    pairs = lambda t: t[..., :8].reshape(*t.shape[:-1], 4, 2).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(pairs(out), pairs(x))  # rotations of adjacent pairs
