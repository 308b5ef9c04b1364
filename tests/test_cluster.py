"""Sweeps on Ray (attn.cluster) against a REAL local Ray instance with two CPUs, started once for
the module and shut down after it; nothing of Ray is mocked, except in the one test of a lost
cancel, a race Ray cannot be made to lose on demand. Ray's start-up takes seconds, so the tests
that need it are slow; the address checks are not."""
import os
import time

import pytest

from attn import cluster
from attn.cli import EXIT_BAD_INPUT, main
from attn.cost import attention_cost
from attn.spec import AttentionSpec
from attn.sweep import run_sweep
from tests import ray_points

BASE = AttentionSpec(batch=1, seq=64, heads=2, head_dim=16, causal=True)
XS = [64, 128, 256]
BUDGET_S = 0.01


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance of two CPUs. Its workers inherit this environment, so ATTN_HOME is set
    to a folder of the tests' before it starts (no worker reads the user's ~/.attn)."""
    ray = pytest.importorskip("ray")
    before = os.environ.get("ATTN_HOME")
    os.environ["ATTN_HOME"] = str(tmp_path_factory.mktemp("ray_attn_home"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if before is None:
        os.environ.pop("ATTN_HOME", None)
    else:
        os.environ["ATTN_HOME"] = before


def _comparable(point) -> tuple:
    """What must not depend on where a point ran: status, FLOPs, the spec, the bytes a regime
    counts, and the mask's pair count."""
    d = point if isinstance(point, dict) else point.__dict__
    pairs = attention_cost(AttentionSpec.from_dict(d["spec"]), d["variant"], d["mode"]).pairs
    return (d["variant"], d["x"], d["status"], d["flops"], d["spec"], d["mode"], d["saved_bytes"],
            d["bytes_read"], pairs)


# -- addresses, without Ray ---------------------------------------------------------------------
class _LossyRay:
    """Ray as it behaves when a cancel reaches a task while it is handed to a worker: the first
    cancel of each task is lost, the second ends it."""

    def __init__(self):
        self.cancels: dict[str, int] = {}

    def cancel(self, ref, force=False):
        assert force
        self.cancels[ref] = self.cancels.get(ref, 0) + 1

    def wait(self, refs, num_returns, timeout):
        done = [r for r in refs if self.cancels.get(r, 0) >= 2]
        return done, [r for r in refs if r not in done]


def test_a_lost_cancel_is_repeated_until_the_task_has_ended(monkeypatch):
    fake = _LossyRay()
    monkeypatch.setattr(cluster, "_ray", lambda: fake)
    assert cluster.cancel_tasks(["a", "b"], within_s=5) == []
    assert fake.cancels == {"a": 2, "b": 2}


def test_a_task_that_outlives_every_cancel_is_returned_in_bounded_time(monkeypatch):
    fake = _LossyRay()
    fake.wait = lambda refs, num_returns, timeout: ([], list(refs))  # never ends
    monkeypatch.setattr(cluster, "_ray", lambda: fake)
    started = time.monotonic()
    assert cluster.cancel_tasks(["a"], within_s=0.3) == ["a"]
    assert time.monotonic() - started < 5


def test_addresses_are_read_as_ray_reads_them():
    assert cluster.host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert cluster.host_port("head-node") == ("head-node", cluster.RAY_PORT)
    assert cluster.host_port("ray://head-node") == ("head-node", cluster.CLIENT_PORT)
    assert cluster.host_port("ray://head-node:1234") == ("head-node", 1234)
    with pytest.raises(ValueError, match="port"):
        cluster.host_port("head:abc")


def test_no_cluster_reachable_is_one_line_and_exit_2(capsys):
    started = time.monotonic()
    code = main(["sweep", "--variants", "sdpa", "--seq", "32,64", "--ray", "127.0.0.1:1", "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("attn: error: no Ray cluster reachable at 127.0.0.1:1")
    assert time.monotonic() - started < 60  # bounded: a TCP connect, not ray.init's minutes of retries


def test_a_task_asks_for_at_least_one_cpu(capsys):
    code = main(["sweep", "--variants", "sdpa", "--seq", "32", "--ray", "127.0.0.1:1", "--ray-cpus", "0"])
    assert code == EXIT_BAD_INPUT
    assert "--ray-cpus must be at least 1" in capsys.readouterr().err


def test_without_ray_nothing_imports_it():
    import subprocess
    import sys

    code = ("import sys, attn.cli, attn.tasks, attn.cluster; attn.cli.build_parser(); "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_the_configured_address_is_attn_s_own_variable(monkeypatch):
    monkeypatch.setenv(cluster.ENV_ADDRESS, "head:6379")
    assert cluster.configured_address() == "head:6379" == cluster.known_address()
    assert "no Ray cluster reachable at 127.0.0.1:1" in cluster.reachable("127.0.0.1:1")
    monkeypatch.setenv(cluster.ENV_ADDRESS, "")
    assert cluster.configured_address() is None


# -- on a local Ray instance ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_on_ray_gives_the_points_of_the_local_sweep(local_ray):
    # train: dense, not sdpa, whose auto backend is the fastest at each length on the machine that
    # runs it, and whose saved memory follows that choice
    for mode, names in (("forward", ["sdpa", "linear"]), ("train", ["dense", "linear"])):
        here = run_sweep(BASE, names, XS, device="cpu", budget_s=BUDGET_S, mode=mode)
        streamed = []
        there = cluster.run_sweep_on_ray(BASE, names, XS, budget_s=BUDGET_S, mode=mode,
                                         on_point=streamed.append)
        assert [_comparable(p) for p in there["points"]] == [_comparable(p) for p in here.points]
        assert sorted(_comparable(p) for p in streamed) == sorted(_comparable(p) for p in here.points)
        assert there["device"] == "cpu" and there["mode"] == mode
        assert there["cluster"]["task_resources"] == {"num_cpus": 1}  # no GPUs: one CPU a task
        assert all(p["node"] for p in there["points"])
        env = there["environment"]  # collected inside the task, on the node
        assert env["device_kind"] == "cpu" and env["torch_threads"] >= 1 and env["node"]


@pytest.mark.slow
def test_a_point_whose_worker_dies_fails_alone_with_its_reason(local_ray):
    result = cluster.run_sweep_on_ray(BASE, ["sdpa"], XS, budget_s=BUDGET_S, point_fn=ray_points.crash_at_128)
    by_x = {p["x"]: p for p in result["points"]}
    assert by_x[ray_points.CRASH_AT]["status"] == "error"
    assert "worker died" in by_x[ray_points.CRASH_AT]["message"]
    assert [by_x[x]["status"] for x in XS if x != ray_points.CRASH_AT] == ["ok", "ok"]


@pytest.mark.slow
def test_an_out_of_memory_point_cancels_its_variant_s_larger_points(local_ray):
    started = time.monotonic()
    result = cluster.run_sweep_on_ray(BASE, ["sdpa"], [64, 128, 256, 512], budget_s=BUDGET_S,
                                      point_fn=ray_points.oom_at_128)
    assert time.monotonic() - started < 50  # the one-minute points were cancelled, not waited for
    assert [(p["x"], p["status"]) for p in result["points"]] == [(64, "ok"), (128, "oom")]
    assert "does not fit" in result["points"][1]["message"]


@pytest.mark.slow
def test_a_cancel_cancels_the_queued_and_running_tasks(local_ray):
    seen = []
    started = time.monotonic()
    result = cluster.run_sweep_on_ray(BASE, ["sdpa"], [64, 128, 256, 512], budget_s=BUDGET_S,
                                      point_fn=ray_points.slow_after_first, on_point=seen.append,
                                      cancelled=lambda: bool(seen))
    assert time.monotonic() - started < 50  # the one-minute points were not waited for
    assert [p.x for p in seen] == [64]
    assert [p["x"] for p in result["points"]] == [64]
    assert result["cluster"]["tasks_not_cancelled"] == 0
    # the cluster is free again: its two CPUs are not held by the cancelled tasks
    deadline = time.monotonic() + 30
    while local_ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local_ray.available_resources().get("CPU", 0) == 2


@pytest.mark.slow
def test_the_sweep_job_on_ray_streams_points_and_saves_the_node_s_environment(local_ray, in_process_jobs):
    from attn import tasks
    from attn.runs import RunStore

    handle = in_process_jobs.submit(tasks.sweep_task, BASE.to_dict(), ["sdpa"], [64, 128], "seq", BUDGET_S,
                                    "forward", "", kind="sweep", title="on ray")
    result = handle.result(timeout=300)
    assert len(handle.new_partials(0)) == 2
    run_id = RunStore().save("sweep", BASE, result, variant="sdpa", environment=result.get("environment"))
    run = RunStore().get(run_id)
    assert run.environment["node"] == result["points"][0]["node"]
    assert "torch_threads" in run.environment


@pytest.mark.slow
def test_the_cli_sweep_with_a_bare_ray_joins_the_running_instance(local_ray, capsys):
    code = main(["sweep", "--variants", "sdpa", "--batch", "1", "--heads", "2", "--head-dim", "16",
                 "--seq", "32,64", "--budget", "0.01", "--ray", "--save", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    import json

    data = json.loads(out)
    assert [p["status"] for p in data["points"]] == ["ok", "ok"]
    assert data["cluster"]["cpus"] == 2
    assert cluster.describe()["address"] == data["cluster"]["address"]


# -- the Scaling page ---------------------------------------------------------------------------------
SCALING = dict(seq="32", heads="2", head_dim="16", variants="sdpa,linear", lo="5", hi="6")


@pytest.mark.usefixtures("in_process_jobs")
def test_scaling_without_a_cluster_says_how_to_configure_one(monkeypatch):
    from tests.conftest import open_app

    monkeypatch.delenv(cluster.ENV_ADDRESS, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    at = open_app("views/scaling.py", **SCALING)
    assert not at.exception
    assert not [t for t in at.toggle if t.key == "sc_ray"]
    assert any(cluster.ENV_ADDRESS in c.value for c in at.caption)


@pytest.mark.usefixtures("in_process_jobs")
def test_scaling_with_an_unreachable_cluster_says_why_and_runs_here(monkeypatch):
    from tests.conftest import open_app

    monkeypatch.setenv(cluster.ENV_ADDRESS, "127.0.0.1:1")
    at = open_app("views/scaling.py", **SCALING)
    assert not at.exception
    assert at.toggle(key="sc_ray").disabled
    assert any("no Ray cluster reachable at 127.0.0.1:1" in c.value for c in at.caption)


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_jobs")
def test_scaling_runs_the_sweep_on_the_configured_cluster(local_ray, monkeypatch):
    from tests.conftest import open_app

    address = cluster.describe()["address"]
    monkeypatch.setenv(cluster.ENV_ADDRESS, address)
    at = open_app("views/scaling.py", **SCALING)
    at.toggle(key="sc_ray").set_value(True).run()
    assert not at.exception, at.exception
    assert any("1 node(s), 2 CPUs, 0 GPUs" in c.value for c in at.caption), [c.value for c in at.caption]
    at.button(key="sc_run").click().run()
    for _ in range(120):  # the fragment polls the job; rerun until the result lands
        if "sweep_result" in at.session_state:
            break
        time.sleep(0.5)
        at.run()
    assert not at.exception
    result = at.session_state["sweep_result"]
    assert [p["status"] for p in result["points"]] == ["ok"] * 4
    assert all(p["node"] for p in result["points"]) and result["cluster"]["address"] == address
