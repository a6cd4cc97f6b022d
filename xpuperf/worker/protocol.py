"""What crosses the process boundary: JSON values and numpy arrays, never a pickle.

A message is a JSON header, in which each array is replaced by {"__array__": i},
then the arrays in .npy form (read back with allow_pickle=False), so that a
worker, whatever its backend did, cannot make the parent execute anything by
what it sends.
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

ARRAY = "__array__"


def send(conn: Any, value: Any) -> None:
    """Send ``value`` (JSON-able, with numpy arrays and scalars anywhere in it)."""
    arrays: list[np.ndarray] = []

    def pack(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            arrays.append(v)
            return {ARRAY: len(arrays) - 1}
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, dict):
            return {str(k): pack(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [pack(x) for x in v]
        return v

    packed = pack(value)
    header = json.dumps({"arrays": len(arrays), "value": packed}).encode()
    blobs = []
    for a in arrays:  # all encoded before anything is sent: a failure leaves the pipe clean
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        blobs.append(buf.getbuffer())
    conn.send_bytes(header)
    for blob in blobs:
        conn.send_bytes(blob)


def receive(conn: Any) -> Any:
    """The next value sent with ``send``; EOFError when the other side is gone."""
    header = json.loads(conn.recv_bytes())
    arrays = [np.load(io.BytesIO(conn.recv_bytes()), allow_pickle=False)
              for _ in range(header["arrays"])]

    def unpack(v: Any) -> Any:
        if isinstance(v, dict):
            return arrays[v[ARRAY]] if set(v) == {ARRAY} else {k: unpack(x) for k, x in v.items()}
        if isinstance(v, list):
            return [unpack(x) for x in v]
        return v

    return unpack(header["value"])
