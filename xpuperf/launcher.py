"""Ranks: how N of them are launched, and how one finds its world. torchrun by
default, or the scheduler a user already has ("srun -n {world_size}", "mpirun
-np {world_size}"). The ranks meet through RANK/WORLD_SIZE/MASTER_ADDR/
MASTER_PORT: torchrun sets them; under srun or mpirun Slurm's and Open MPI's own
variables stand in for RANK and WORLD_SIZE, and the user exports MASTER_ADDR and
MASTER_PORT. Shared by the collectives (xpuperf.microperf) and the
tensor-parallel LLM workers (xpuperf.worker.ranks). Imports no torch until a
rank joins.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Any

# (rank, world size) variables of torchrun, Slurm, Open MPI and MPICH/Intel MPI.
RANK_VARIABLES = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"),
                  ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"))
DIST_BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # torch.distributed's default per device type


def command(world_size: int, launcher: str | None) -> list[str]:
    """The launcher's words for ``world_size`` ranks, before the rank program
    (``-m module ...``): torchrun on this host when ``launcher`` is None."""
    if not launcher:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={world_size}"]
    try:
        return shlex.split(launcher.format(world_size=world_size)) + [sys.executable]
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"--micro-launcher {launcher!r}: {e}; write it with {{world_size}} "
                         "for the rank count, e.g. 'srun -n {world_size}'") from None


def environment(program: str) -> tuple[int, int]:
    """(rank, world size) from torchrun's, Slurm's or MPI's variables; the
    rendezvous address must be in MASTER_ADDR/MASTER_PORT. SystemExit naming
    ``program`` and the fix otherwise."""
    for rank_var, size_var in RANK_VARIABLES:
        if rank_var in os.environ and size_var in os.environ:
            missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
            if missing:
                raise SystemExit(f"{program}: {rank_var}/{size_var} are set but "
                                 f"{' and '.join(missing)} not: export MASTER_ADDR=<rank 0's "
                                 "host> MASTER_PORT=<free port> before srun or mpirun (torchrun "
                                 "sets them itself)")
            os.environ.setdefault("RANK", os.environ[rank_var])
            os.environ.setdefault("WORLD_SIZE", os.environ[size_var])
            return int(os.environ[rank_var]), int(os.environ[size_var])
    raise SystemExit(f"{program}: no RANK/WORLD_SIZE in the environment: launch it with "
                     f"torchrun, srun or mpirun (python -m torch.distributed.run "
                     f"--nproc-per-node N -m {program} ...)")


def join(program: str, device_name: str, dist_backend: str | None = None
         ) -> tuple[int, int, Any, str]:
    """Join the world this process is a rank of: (rank, world size, its torch
    device, the torch.distributed backend). A device named without an index
    ("cuda") becomes the rank's local one (LOCAL_RANK)."""
    rank, world = environment(program)
    import torch

    device = torch.device(device_name)
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, int(os.environ.get("LOCAL_RANK", "0")))
        getattr(torch, device.type).set_device(device)
    backend = dist_backend or DIST_BACKENDS.get(device.type)
    if backend is None:
        raise SystemExit(f"{program}: no default torch.distributed backend for {device.type}: "
                         "name yours with --dist-backend")
    torch.distributed.init_process_group(backend)
    return rank, world, device, backend
