"""Records must cross pytest-xdist's wire (execnet), which takes plain Python only."""
import execnet.gateway_base as wire
import numpy as np

from xpuperf.records import jsonable


def test_numpy_scalars_become_plain_python_and_cross_the_wire():
    record = {"metrics": {"accuracy": np.float64(60.9), "auc": np.float32(0.5)},
              "count": np.int64(3), "flag": np.bool_(True), "ok": True, "shape": (np.int32(2), 4),
              "nan": np.float64("nan"), "inf": float("inf"), "name": "x", "none": None}
    out = jsonable(record)
    assert out == {"metrics": {"accuracy": 60.9, "auc": 0.5}, "count": 3, "flag": True, "ok": True,
                   "shape": [2, 4], "nan": None, "inf": None, "name": "x", "none": None}
    assert type(out["metrics"]["accuracy"]) is float and type(out["count"]) is int
    wire.dumps(out)  # raises DumpError on any numpy type left
