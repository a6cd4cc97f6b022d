"""Launching the collectives' ranks (xpuperf.launcher: torchrun, or
--micro-launcher's srun or mpirun), each rank running xpuperf.microperf.xccl;
rank 0's summary is read back.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

from xpuperf.launcher import command
from xpuperf.microperf.workloads import Workload

OUTPUT_TAIL = 3000  # characters of the ranks' output quoted when they fail


def run_world(cases: Sequence[Workload], world_size: int, device: str, dist_backend: str | None,
              tier: str, launcher: str | None, timeout_s: float, root: Path
              ) -> dict[str, Any]:
    """Every case on ``world_size`` ranks in one launch: {case id: rank 0's
    record}, or {"_error": why} when the launch failed."""
    with tempfile.TemporaryDirectory(prefix="xpuperf-xccl-") as tmp:
        spec, out = Path(tmp) / "cases.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps([{"id": c.id, "op": c.op, "args": c.op_args} for c in cases]))
        argv = command(world_size, launcher) + [
            "-m", "xpuperf.microperf.xccl", str(spec), str(out), f"--device={device}",
            f"--tier={tier}"] + ([f"--dist-backend={dist_backend}"] if dist_backend else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
        # A group of its own: a hung rank is ended with the launcher, not left behind.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"_error": f"{world_size} ranks ran past {timeout_s:g} s: {' '.join(argv)}"}
        if proc.returncode or not out.exists():
            return {"_error": f"{' '.join(argv)} exited {proc.returncode}: "
                              f"{output[-OUTPUT_TAIL:]}"}
        return json.loads(out.read_text())
