"""What ``Compiled.run`` must return, checked against the zoo's declaration of the
model's outputs: a dict holding exactly the declared names, each a numpy array of
the declared dtype (strings: numpy's unicode or object arrays) and of the batch's
size along its first axis (and the declared shape, where the zoo gives one); an
output without a batch axis (``batched: false``) of the declared shape whole. A backend that breaks it is told what
it returned against what the zoo declares, instead of a KeyError further on."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xpuperf.zoo import TensorSpec


class ContractError(TypeError):
    """A backend's run returned something other than the zoo's declared outputs."""


def _what(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def check_outputs(outputs: Any, declared: Sequence[TensorSpec], batch_size: int
                  ) -> dict[str, np.ndarray]:
    """``outputs`` if it keeps the contract for a batch of ``batch_size``, else
    ContractError saying what came back and what the zoo declares."""
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
        if not t.batched:
            if t.shape and value.shape != t.shape:
                raise ContractError(f"output {t.name!r}: shape {value.shape}; the zoo declares "
                                    f"{t.shape} (the output has no batch axis)")
            continue
        want = (batch_size, *t.shape[1:]) if t.shape else None
        if value.ndim == 0 or value.shape[0] != batch_size or (want and value.shape != want):
            raise ContractError(f"output {t.name!r}: shape {value.shape} for a batch of "
                                f"{batch_size}; the zoo declares "
                                f"{want or f'({batch_size}, ...)'}")
    return outputs
