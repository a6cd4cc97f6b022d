"""What ``Compiled.run`` must return, checked against the zoo's declaration of the
model's outputs: a dict holding exactly the declared names, each a numpy array of
the declared dtype (strings: numpy's unicode or object arrays) and of the batch's
size along its first axis (and the declared shape, where the zoo gives one, else
the model graph's fixed axes); an output without a batch axis (``batched:
false``) of the declared shape whole. A backend that breaks it is told what it
returned against what the zoo declares, instead of a KeyError or a shape
mismatch further on."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from xpuperf.zoo import TensorSpec


class ContractError(TypeError):
    """A backend's run returned something other than the zoo's declared outputs."""


def _what(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def check_outputs(outputs: Any, declared: Sequence[TensorSpec], batch_size: int,
                  graph: Mapping[str, tuple[int | None, ...] | None] | None = None
                  ) -> dict[str, np.ndarray]:
    """``outputs`` if it keeps the contract for a batch of ``batch_size``, else
    ContractError saying what came back and what the zoo declares. ``graph``:
    the model graph's shape of each output (None: a free axis, or the rank
    unknown; onnx_file.signature), which holds where the zoo declares none."""
    names = [t.name for t in declared]
    if not isinstance(outputs, dict):
        raise ContractError(f"Compiled.run returned {_what(outputs)}; the contract is a dict of "
                            f"numpy arrays by output name, and the zoo declares {names}")
    missing = [n for n in names if n not in outputs]
    extra = sorted(str(n) for n in outputs if n not in names)
    if missing or extra:
        raise ContractError(f"Compiled.run returned outputs {sorted(map(str, outputs))}; the zoo "
                            f"declares {names}" + (f" (missing {missing})" if missing else "")
                            + (f" (not declared {extra})" if extra else ""))
    for t in declared:
        value = outputs[t.name]
        if not isinstance(value, np.ndarray):
            raise ContractError(f"output {t.name!r}: Compiled.run returned {_what(value)}, not a "
                                "numpy array")
        if value.dtype.name != t.dtype and not (t.dtype == "string" and value.dtype.kind in "UO"):
            raise ContractError(f"output {t.name!r}: dtype {value.dtype.name}; the zoo declares "
                                f"{t.dtype}")
        shape, source = (t.shape, "the zoo declares") if t.shape else (
            (graph or {}).get(t.name), "the model's graph has")
        if not t.batched:
            if shape and not _fits(value.shape, shape):
                raise ContractError(f"output {t.name!r}: shape {value.shape}; {source} "
                                    f"{_text(shape)} (the output has no batch axis)")
            continue
        want = (batch_size, *shape[1:]) if shape else (batch_size, ...)
        if not _fits(value.shape, want):
            raise ContractError(f"output {t.name!r}: shape {value.shape} for a batch of "
                                f"{batch_size}; {source if shape else 'the zoo declares'} "
                                f"{_text(want)}")
    return outputs


def _fits(shape: tuple[int, ...], want: tuple) -> bool:
    """Whether ``shape`` is ``want``'s, where None is any size and a trailing
    Ellipsis any further axes."""
    if want and want[-1] is Ellipsis:
        return len(shape) >= len(want) - 1 and _fits(shape[:len(want) - 1], want[:-1])
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _text(shape: tuple) -> str:
    """(2, ?, 4): a free axis as '?', further axes as '...'."""
    dims = ["?" if d is None else "..." if d is Ellipsis else str(d) for d in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"
