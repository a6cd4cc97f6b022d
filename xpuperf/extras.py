"""The optional dependencies: which extra of xpuperf (pyproject.toml) brings each
framework or compiler module, and the one error that names the extra to install
when a module is missing. The core package (xpuperf compare, the report writer,
the plugin, the contract kit) imports none of these."""
from __future__ import annotations

import importlib
from types import ModuleType

# Top-level module -> the extra that installs it.
EXTRA_OF = {
    "torch": "torch", "transformers": "torch", "tokenizers": "torch", "safetensors": "torch",
    "tensorflow": "tf", "keras": "tf", "tf2onnx": "tf",
    "onnxruntime": "onnx",
    "openvino": "openvino", "nncf": "openvino",
    "tvm": "tvm",
    "diffusers": "diffusers",
    "mlperf_loadgen": "mlperf",
    "ray": "ray",
    "pynvml": "gpu", "onnx2torch": "gpu",
}


class MissingExtra(ImportError):
    """A framework or compiler module is missing; the message names the extra."""


def pip_hint(modules: list[str] | tuple[str, ...]) -> str:
    """``pip install 'xpuperf[a,b]'`` for the extras of ``modules`` ('' if none is an extra's)."""
    extras = sorted({EXTRA_OF[m.split(".")[0]] for m in modules if m.split(".")[0] in EXTRA_OF})
    return f"pip install 'xpuperf[{','.join(extras)}]'" if extras else ""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (any module, xpuperf's own included) for ``purpose``; a
    missing framework or compiler on the way raises MissingExtra:
    "xpuperf[torch] is needed for bert-torch: pip install 'xpuperf[torch]'"."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        extra = EXTRA_OF[top]
        raise MissingExtra(f"xpuperf[{extra}] is needed for {purpose} (no module {top!r}): "
                           f"pip install 'xpuperf[{extra}]'", name=top) from e
