"""Sweeps on a Ray cluster: one Ray task a point, running the local worker's own point function
(`attn.sweep.measure_point`), with the device and environment of the node that measured it.

    info = cluster.connect("10.0.0.5:6379")   # or None: ray.init()'s default, see below
    result = cluster.run_sweep_on_ray(spec, ["sdpa", "linear"], [1024, 2048], on_point=print)

`address` None follows `ray.init()`: the cluster Ray already knows of (RAY_ADDRESS, or the last
`ray start` on this machine), else a new local instance. An explicit address is tried with a TCP
connect first (CONNECT_TIMEOUT_S), because `ray.init` retries an unreachable one for minutes.

Ray is imported inside the functions only: without --ray (or ATTN_RAY_ADDRESS) nothing here
loads it, and the CLI starts as fast as before. Every Ray call of attn lives in this module.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict
from typing import Any, Callable

from attn.spec import AttentionSpec

ENV_ADDRESS = "ATTN_RAY_ADDRESS"
CONNECT_TIMEOUT_S = 5.0
RAY_PORT = 6379  # `ray start --head`'s default GCS port
CLIENT_PORT = 10001  # Ray Client's default (ray://host)
POLL_S = 0.25  # how often the driver looks for finished points and for a cancel
CANCEL_S = 20.0  # how long the driver repeats a cancel that Ray has not carried out yet


class ClusterError(Exception):
    """Sweeps cannot go to a Ray cluster; one line saying what to do (the CLI exits 2 with it)."""


class ClusterUnreachable(ClusterError, ConnectionError):
    """No Ray cluster answers at the address."""


def _ray():
    """The ray module, imported on first use (a second or more, and 240 MB that only --ray needs)."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray, which is not installed here: pip install 'attn[cluster]' "
                           "(make install does)") from None
    return ray


# -- where the cluster is ------------------------------------------------------------------------
def configured_address() -> str | None:
    """ATTN_RAY_ADDRESS, or None when it is unset or empty."""
    return os.environ.get(ENV_ADDRESS) or None


def known_address() -> str | None:
    """The cluster the app may offer without starting one or importing Ray: ATTN_RAY_ADDRESS, else
    Ray's own RAY_ADDRESS. None when neither is set (a bare --ray on the command line still finds
    a `ray start` of this machine, through ray.init)."""
    return configured_address() or os.environ.get("RAY_ADDRESS") or None


def reachable(address: str, timeout_s: float = 1.0) -> str | None:
    """None when something accepts a TCP connection at the address, else why not (one line)."""
    try:
        probe(address, timeout_s)
    except (ClusterUnreachable, ValueError) as err:
        return str(err)
    return None


def host_port(address: str) -> tuple[str, int]:
    """(host, port) of "host:port", "host" (Ray's default port) or "ray://host[:port]"."""
    text = address.strip()
    client = text.startswith("ray://")
    text = text.removeprefix("ray://")
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"cannot read a Ray address from {address!r}: give host:port or ray://host:port")
    try:
        return host.strip("[]"), int(port) if port else (CLIENT_PORT if client else RAY_PORT)
    except ValueError:
        raise ValueError(f"cannot read a port from the Ray address {address!r}") from None


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterUnreachable unless something accepts a TCP connection at the address."""
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
    raise ClusterUnreachable(
        f"no Ray cluster reachable at {address}: {reason} (waited at most {timeout_s:g} s); start one there "
        f"with `ray start --head`, check the address, or give a bare --ray for a local instance")


# -- connecting ------------------------------------------------------------------------------------
def connect(address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Join the cluster at `address` as its driver (once per process) and describe it.

    The caller's attn package travels with the tasks (runtime_env py_modules), so every node runs
    this attn's code; the nodes must have its dependencies (torch and the rest) installed."""
    ray = _ray()

    if not ray.is_initialized():
        if address not in (None, "", "auto", "local"):
            probe(address, timeout_s)
        import logging

        import attn

        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING,
                     runtime_env={"py_modules": [attn], "excludes": ["__pycache__", "*.pyc"]})
        except ConnectionError as err:
            raise ClusterUnreachable(f"no Ray cluster reachable at {address or 'auto'}: "
                                     f"{_first_line(err)}") from None
    return describe()


def describe() -> dict[str, Any]:
    """The connected cluster: address, live nodes, CPUs and GPUs (ray.cluster_resources), Ray's version."""
    import ray

    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"address": ray.get_runtime_context().gcs_address, "nodes": len(nodes),
            "cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
            "ray": ray.__version__}


def shutdown() -> None:
    """Leave the cluster (and stop a local instance this process started)."""
    import ray

    ray.shutdown()


def task_resources(info: dict[str, Any], device: str, cpus_per_task: int = 1) -> tuple[str, dict[str, float]]:
    """The device each task runs on and what it asks Ray for: one GPU where the cluster has GPUs
    (and `device` is auto or cuda), so two timings never share a GPU; else `cpus_per_task` CPUs
    (Ray sets the task's OMP_NUM_THREADS to them, so torch runs that many threads)."""
    if device.startswith("cuda") or device == "auto":
        if info["gpus"] >= 1:
            return "cuda", {"num_gpus": 1}
        if device != "auto":
            raise ValueError(f"device {device} was asked for, but the Ray cluster at {info['address']} "
                             "has no GPUs: use cpu or auto")
    return "cpu", {"num_cpus": cpus_per_task}


# -- one point, on a node ------------------------------------------------------------------------
def measure_on_node(spec: dict, variant: str, x: int, device: str, budget_s: float, mode: str) -> dict:
    """A Ray task's body: one point measured by the local worker's code (sweep.measure_point),
    with the node's environment (collected here, on the node), free memory and name."""
    import torch

    from attn import sweep
    from attn.device import free_bytes, resolve_device
    from attn.environment import environment

    device = resolve_device(device)  # "cuda" is the GPU Ray gave this task (CUDA_VISIBLE_DEVICES)
    if device == "cpu":  # torch on as many threads as the task holds CPUs: Ray sets OMP_NUM_THREADS only
        torch.set_num_threads(max(1, int(_assigned_cpus())))  # when it starts a worker, which is reused
    point = sweep.measure_point(AttentionSpec.from_dict(spec), variant, x, device, budget_s, mode=mode)
    point.node = socket.gethostname()
    env = {**environment(device), "node": point.node, "torch_threads": torch.get_num_threads()}
    return {"point": asdict(point), "environment": env, "free_bytes": free_bytes(device)}


def _assigned_cpus() -> float:
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU", 1)


PointFn = Callable[[dict, str, int, str, float, str], dict]


def _failed_point(err: BaseException, spec: AttentionSpec, variant: str, x: int, mode: str):
    """The point of a task that returned no result: why, in one line. A worker that died (a crash,
    a kill, Ray's memory monitor) fails its own point only."""
    import ray.exceptions as rex

    from attn.device import is_out_of_memory
    from attn.sweep import Point

    if isinstance(err, rex.OutOfMemoryError):
        status, message = "oom", "Ray's memory monitor killed the task: " + _first_line(err)
    elif isinstance(err, rex.TaskCancelledError):
        status, message = "error", "cancelled"
    elif isinstance(err, rex.WorkerCrashedError):
        status, message = "error", "the Ray worker died while measuring: " + _first_line(err)
    elif isinstance(err, rex.RayTaskError) and err.cause is not None:
        status = "oom" if is_out_of_memory(err.cause) else "error"
        message = f"{type(err.cause).__name__}: {_first_line(err.cause)}"
    else:
        status, message = "error", f"{type(err).__name__}: {_first_line(err)}"
    return Point(variant, x, status, message, spec=spec.to_dict(), mode=mode)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


# -- the sweep ---------------------------------------------------------------------------------------
def run_sweep_on_ray(base: AttentionSpec, names: list[str], xs: list[int], axis: str = "seq",
                     device: str = "auto", budget_s: float = 0.5,
                     on_point: Callable[[Any], None] | None = None,
                     cancelled: Callable[[], bool] | None = None, mode: str = "forward",
                     address: str | None = None, point_fn: PointFn | None = None,
                     cpus_per_task: int = 1) -> dict[str, Any]:
    """attn.sweep.run_sweep's result as a dict, each point a Ray task (`point_fn`, by default
    measure_on_node, the local worker's code). Points come back as they finish and go to
    `on_point` at once; a point whose task died fails alone with the reason. A cancel cancels the
    tasks still queued or running. On CPUs each task asks for `cpus_per_task` CPUs (a node's CPU
    count gives one point at a time a node, timed as its own worker would). An out-of-memory point
    cancels its variant's larger points that have not finished, as the local sweep stops there. The walls are projected from the fits
    against the smallest free memory a node reported (never bisected: that allocates for real on
    one GPU for many seconds). Adds "environment" (the measuring node's; the device names of all
    when several kinds measured), "environments" (one per node) and "cluster"."""
    ray = _ray()

    from attn import sweep

    xs, specs = sweep.plan_sweep(base, names, xs, axis, budget_s, mode)
    info = connect(address)
    device, resources = task_resources(info, device, cpus_per_task)
    task = ray.remote(point_fn or measure_on_node).options(max_retries=0, **resources)
    # the smallest values first, every variant, so that each curve grows from the left
    pending = {task.remote(specs[x].to_dict(), n, x, device, budget_s, mode): (n, x) for x in xs for n in names}
    points, envs, free, dropped = [], {}, [], []
    started = time.perf_counter()
    while pending:
        if cancelled is not None and cancelled():
            dropped += pending
            break
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in done:
            n, x = pending.pop(ref)
            try:
                out = ray.get(ref)
                point = sweep.Point(**out["point"])
                envs[out["environment"].get("node") or point.node] = out["environment"]
                free.append(int(out["free_bytes"]))
            except ray.exceptions.RayError as err:
                point = _failed_point(err, specs[x], n, x, mode)
            points.append(point)
            if on_point is not None:
                on_point(point)
            if point.status == "oom":  # larger values of this variant only need more memory
                for other, (m, y) in list(pending.items()):
                    if m == n and y > x:
                        ray.cancel(other, force=True)
                        dropped.append(other)
                        del pending[other]
    still_running = cancel_tasks(dropped)
    points.sort(key=lambda p: (names.index(p.variant), p.x))
    budget = min(free) if free else 0
    result = sweep.sweep_result(base, names, xs, axis, device, points, budget, "cpu", mode).to_dict()
    result["environment"] = _merged_environment(list(envs.values()), info, device)
    result["environments"] = list(envs.values())
    result["cluster"] = {**info, "task_resources": resources, "wall_s": time.perf_counter() - started,
                         "tasks_not_cancelled": len(still_running)}
    return result


def cancel_tasks(refs: list, within_s: float = CANCEL_S) -> list:
    """Cancels Ray tasks (killing the worker of a running one) and waits until each has ended,
    cancelling again those still alive: a cancel that reaches a task while it is being handed to a
    worker can be lost (ray-project/ray#24359), and the task would then hold its CPU or GPU for as
    long as it runs. Returns the refs that had not ended after `within_s`."""
    if not refs:
        return []
    ray = _ray()
    deadline = time.monotonic() + within_s
    alive = list(refs)
    while alive:
        for ref in alive:
            ray.cancel(ref, force=True)
        _, alive = ray.wait(alive, num_returns=len(alive), timeout=POLL_S)
        if time.monotonic() > deadline:
            break
    return alive


def _merged_environment(envs: list[dict], info: dict, device: str) -> dict[str, Any]:
    """The run's environment: the measuring node's; where nodes of several kinds measured, the
    first node's with every device named; where none finished a point, says so."""
    if not envs:
        return {"device": f"not measured (no point finished on the Ray cluster at {info['address']})",
                "device_kind": device}
    names = list(dict.fromkeys(e.get("device") for e in envs))
    return {**envs[0], "device": " + ".join(map(str, names)), "nodes": sorted({e.get("node") for e in envs})}
