"""A group's backend worker on a node of a Ray cluster (--ray-address): the
local worker's handle (xpuperf.worker.process.Worker) run inside a Ray actor
placed on a node that offers the hardware's resource, one unit of it: "GPU"
for --hardware GPU, "CPU" for CPU, else a custom resource named after the
hardware (a node started with `ray start --resources '{"TVM": 1}'`).

The backend still runs in a process of its own on that node, speaking the
worker protocol (no pickle) to the actor, which is xpuperf's code; the actor's
answers (JSON values and numpy arrays) come back to the pytest process by Ray.
A crash or a time-out in the backend is the local worker's error, passed on as
it is; a lost actor or node (the node died, its raylet was killed) is a
WorkerLost saying so, which fails the group's items with that reason while the
session goes on. The zoo, the cache and the data folders are read on the node
at the paths the session gives: a file system the nodes share.

Ray is an optional extra (pip install xpuperf[ray]); nothing here imports it
until a session asks for --ray-address.
"""
from __future__ import annotations

import socket
from typing import Any

from xpuperf.worker.process import RemoteError, StartFailed, Worker, WorkerLost, start_limit_s

# Over the inner worker's own limits: a node that stops answering (a hung
# raylet) is lost after the command's time limit and its worker's start-up
# limit, plus this.
GRACE_S = 60.0


def placement(hardware: str) -> dict[str, Any]:
    """The Ray actor options that ask for one of the hardware's resource (Ray
    takes its own CPU and GPU as num_cpus, num_gpus, others by name)."""
    if hardware == "CPU":
        return {"num_cpus": 1}
    if hardware == "GPU":
        return {"num_cpus": 0, "num_gpus": 1}
    return {"num_cpus": 0, "resources": {hardware: 1}}


class _Host:
    """The Ray actor: a local Worker on its node; its answers tagged, so that
    the worker's errors cross Ray as values, not as pickled exceptions."""

    def __init__(self, host: str, kwargs: dict[str, Any], name: str, device: str | None):
        self.worker = Worker(host, kwargs, name, device=device)

    def where(self) -> dict[str, str]:
        import ray
        return {"host": socket.gethostname(), "ray_node": ray.get_runtime_context().get_node_id()}

    def call(self, command: str, timeout_s: float, args: dict[str, Any]) -> tuple:
        try:
            return ("value", self.worker.call(command, timeout_s, **args))
        except StartFailed as e:
            return ("start", str(e), e.timed_out, e.traceback)
        except WorkerLost as e:
            return ("lost", str(e), e.stage, e.timed_out)
        except RemoteError as e:
            return ("remote", e.type, e.message, e.traceback)

    def close(self) -> None:
        self.worker.close()


class RayWorker:
    """Worker's interface (call, close) for a group whose worker runs on a Ray
    node offering ``resources``; the actor is made on the first call."""

    def __init__(self, host: str, kwargs: dict[str, Any], name: str, address: str,
                 hardware: str, device: str | None = None):
        self.args = (host, kwargs, name, device)
        self.address, self.options = address, placement(hardware)
        self.name = name
        self.start_timeout_s = start_limit_s()  # the inner worker's, for the actor's start too
        self._actor: Any = None
        self.where: dict[str, str] = {}  # host and Ray node id of the actor, once it runs

    def call(self, command: str, timeout_s: float, **args: Any) -> Any:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            if self._actor is None:
                if not ray.is_initialized():
                    ray.init(address=self.address, log_to_driver=False)
                actor = ray.remote(_Host).options(max_restarts=0, **self.options)
                self._actor = actor.remote(*self.args)
                self.where = ray.get(self._actor.where.remote(), timeout=self.start_timeout_s)
            answer = ray.get(self._actor.call.remote(command, timeout_s, args),
                             timeout=timeout_s + self.start_timeout_s + GRACE_S)
        except GetTimeoutError:
            self._kill()
            if not self.where:  # never placed: no node offers the resource, or none is free
                raise StartFailed(f"no node of the Ray cluster at {self.address} took the "
                                  f"backend's worker within {self.start_timeout_s:g} s: it "
                                  f"asks for {self.options}; start nodes that offer it (ray "
                                  "start --num-gpus / --resources)", True) from None
            raise WorkerLost(f"the Ray node{self._where()} stopped answering while {command}",
                             command, True) from None
        except RayError as e:
            self._kill()
            raise WorkerLost(f"the Ray actor of the backend's worker{self._where()} was lost "
                             f"while {command}: {type(e).__name__}: {str(e).splitlines()[0]}",
                             command, False) from None
        kind, *rest = answer
        if kind == "value":
            return rest[0]
        if kind == "start":
            raise StartFailed(*rest)
        if kind == "lost":
            raise WorkerLost(*rest)
        raise RemoteError(*rest)

    def close(self) -> None:
        if self._actor is None:
            return
        import ray
        from ray.exceptions import RayError
        try:
            ray.get(self._actor.close.remote(), timeout=GRACE_S)
        except RayError:
            pass  # lost already: nothing of it to close
        self._kill()

    def _where(self) -> str:
        return f" on {self.where['host']} (node {self.where['ray_node'][:12]})" \
            if self.where else ""

    def _kill(self) -> None:
        import ray
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)
        self._actor = None
