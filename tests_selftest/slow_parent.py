"""A pytest plugin for the time-limit selftests (test_faults.py): -p
tests_selftest.slow_parent makes the parent's own work for a model slow, as a
big export or reference run is: models named slowexport-* take 120 s more to
export, slowref-* 120 s more for their reference run (the session's, not the
export's own check of its graph)."""
from __future__ import annotations

import time

from xpuperf import session
from xpuperf.models.artifact import ModelArtifact

SLOW_S = 120
_onnx_path, _run_in_batches = ModelArtifact.onnx_path, session.run_in_batches


def _onnx_path_slowly(self):
    if self.name.startswith("slowexport"):
        time.sleep(SLOW_S)
    return _onnx_path(self)


def _run_in_batches_slowly(run, *args, **kwargs):
    if getattr(getattr(run, "__self__", None), "name", "").startswith("slowref"):
        time.sleep(SLOW_S)
    return _run_in_batches(run, *args, **kwargs)


ModelArtifact.onnx_path, session.run_in_batches = _onnx_path_slowly, _run_in_batches_slowly
