"""The fake-CUDA lane: every torch model of the zoo's smoke tier (each model
once: ``_distinct``), and every LLM workload's model (each once too), through the GPU backend's own preparation on a fake CUDA device
(tests_selftest/fake_cuda.py says what it stands in for and what it cannot check).

Per entry, at each precision the backend offers a capability 9.0 card (fp32,
tf32, fp16, bf16, fp8): device placement, the dtype cast, the fp8 Linear swap,
the eager compile's op count and warm-up, then one forward on the device-resident
path; and with mode=cudagraphs at fp16, the capture path. Per LLM workload, at
fp32, fp16 and bf16: the engine the backend picks (the static-cache one where it
serves the model: its caches and captured decode steps, a prefill and a decode
step; the slots engine's cache rows and steps; the reference engine's prefill).
A tensor left on the CPU fails with FakeTensorDeviceMismatchError, an input cast
missed with DtypeMismatch. mode=compile is not here: inductor generates kernels,
which need a real device (.ci/gpu-check runs it).

README's test command runs this file (CI too); it takes a minute or two."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from backends.gpu import GpuBackend  # noqa: E402
from backends.gpu.generation import StaticCacheEngine  # noqa: E402
from backends.gpu.slots import SlotsEngine, _Store  # noqa: E402
from tests_selftest.fake_cuda import HostBuilt, fake_cuda  # noqa: E402
from xpuperf.cache import Cache  # noqa: E402
from xpuperf.generation.models import LMArtifact  # noqa: E402
from xpuperf.models.artifact import ModelArtifact  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO = load_zoo(ROOT / "zoo.yaml", "smoke")


def _distinct(models: list[Any]) -> list[Any]:
    """One entry of each model: entries of one builder and config that differ
    only in their dims (gru-s128 ... gru-s1024: a sequence length) run once, at
    the first, as a tensor's device does not depend on a length."""
    seen: dict[tuple[str, str], Any] = {}
    for m in models:
        seen.setdefault((m.builder, repr(sorted(m.config.items()))), m)
    return list(seen.values())


MODELS = _distinct([m for m in ZOO.models if m.framework == "torch"])
# Workloads of one model at other sizes (long context, chunked prefill, a shared
# prefix) set up the same engine.
WORKLOADS = _distinct(list(ZOO.generation))
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8")
RUNS = [(p, "eager") for p in PRECISIONS] + [("fp16", "cudagraphs")]
LLM_PRECISIONS = ("fp32", "fp16", "bf16")
ENGINES = ("static", "slots")
PROMPT, CACHE = 8, 64  # tokens of the prefill; the static cache's length


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = Cache(tmp_path_factory.mktemp("fake-cuda-models"))
    return {m.name: HostBuilt(ModelArtifact(m, cache, ZOO.path.parent, calibration=lambda n: []))
            for m in MODELS}


@pytest.mark.parametrize("precision,mode", RUNS, ids=[f"{p}-{m}" for p, m in RUNS])
@pytest.mark.parametrize("name", [m.name for m in MODELS])
def test_entry_prepares_and_runs_on_the_fake_device(artifacts: dict[str, Any], name: str,
                                                     precision: str, mode: str) -> None:
    artifact = artifacts[name]
    # One batch size: a tensor's device does not depend on it.
    batch = artifact.spec.batch_sizes[0]
    with fake_cuda():
        compiled = GpuBackend().compile(artifact, precision, (batch,),
                                        {"device": "cuda", "mode": mode})
        resident = compiled.resident()
        outputs = resident.run(resident.put(artifact.example_feeds(batch)))
    assert outputs and all(o.device == torch.device("cuda", 0) for o in outputs)
    if precision == "fp8" and compiled.report.precision == "fp8":
        assert compiled.report.details["fp8_layers"]


def _check_engine(served: Any) -> None:
    """The engine's device work short of reading a token (fake tensors hold none)."""
    device, ids = served.device, torch.zeros(1, PROMPT, dtype=torch.long)
    if isinstance(served, StaticCacheEngine):
        decoder = served._decoder_for(CACHE)
        size = served._sizes[0]
        cache = decoder.caches[size]
        cache.reset()
        first = served._lm(ids.expand(size, -1).to(device), cache)[:, -1].argmax(-1)
        assert decoder.steps[size](first[:, None]).device == torch.device(device)
    elif isinstance(served, SlotsEngine):
        store = _Store(served, CACHE)
        assert store.steps[served._sizes[0]]().device == torch.device(device)
    else:  # the reference or continuous engine: its prefill
        assert served._lm(ids.to(device), None).device == torch.device(device)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision", LLM_PRECISIONS)
@pytest.mark.parametrize("workload", WORKLOADS, ids=[w.name for w in WORKLOADS])
def test_llm_engine_sets_up_and_steps_on_the_fake_device(workload: Any, precision: str,
                                                         engine: str) -> None:
    artifact = HostBuilt(LMArtifact(workload.name, workload.builder, workload.config,
                                    workload.seed))
    with fake_cuda():
        served = GpuBackend().generation_engine(
            artifact, precision, {"device": "cuda", "engine": engine, "max_batch": "2"})
        try:
            assert served.device == "cuda:0"
            with torch.inference_mode():  # as the engine's serving thread runs it
                _check_engine(served)
        finally:
            served.close()
