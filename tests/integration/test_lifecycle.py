"""The run lifecycle across real processes: three workers (real pjsua2 calls), real NATS
and Postgres; services killed with SIGKILL and restarted mid-run, workers lost and back.

Calls are paired on one worker where a test kills a worker, so the endpoints that are
not lost have a live peer and can finish SUCCESS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration
WORKERS = ("w1", "w2", "w3")
CAPACITY = 8  # endpoint slots per worker: a two-host worker, quick to fill


@pytest.fixture(scope="module")
def lp(
    tmp_path_factory: pytest.TempPathFactory, nats_server: Any, postgres_server: Any
) -> Iterator[TestPlatform]:
    """Control services plus three workers of 8 slots (heartbeats every second: the default)."""
    p = TestPlatform(tmp_path_factory.mktemp("lifecycle"), nats_server.url, postgres_server.url)
    p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
    try:
        for worker in WORKERS:
            p.start_worker(worker, CALLMETER_CAPACITY=str(CAPACITY))
        p.wait_for_api()
        wait_workers_online(p, WORKERS)
        yield p
    finally:
        stop_quickly(p)


def stop_quickly(p: TestPlatform, grace_s: float = 4.0) -> None:
    """SIGTERM everyone at once, then SIGKILL what is left after `grace_s`.

    Workers and metrics-ingest do not exit on SIGTERM within TestPlatform.stop's
    10 s per process (their pull consumers' shutdown), which would add ~30 s here.
    """
    hosts = [pid for name in WORKERS if name in p.procs for pid in host_pids(p.procs[name].pid)]
    for proc in p.procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in p.procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for pid in [proc.pid for proc in p.procs.values()] + hosts:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # hosts lead sessions (process groups) of their own
    for proc in p.procs.values():
        proc.wait(5)
    p.procs.clear()


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise TimeoutError(f"not true after {timeout}s: {what}")


def workers_by_id(p: TestPlatform) -> dict[str, dict[str, Any]]:
    return {w["worker_id"]: w for w in p.request("GET", "/api/v1/workers")[1]["items"]}


def wait_workers_online(p: TestPlatform, ids: tuple[str, ...]) -> None:
    wait_until(
        f"{ids} online",
        lambda: all(workers_by_id(p).get(w, {}).get("status") == "ONLINE" for w in ids),
    )


def get_run(p: TestPlatform, run_id: str) -> dict[str, Any]:
    return p.request("GET", f"/api/v1/runs/{run_id}")[1]


def endpoints(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in run["endpoints"]}


def pairs(*workers: str, per_group: int = 1, duration_s: float = 4, **extra: Any) -> dict[str, Any]:
    """Caller group Cn calls receiver group Rn, both pinned to worker n."""
    groups = []
    for i, worker in enumerate(workers, 1):
        groups += [
            {"name": f"C{i}", "endpoints": per_group, "calls": f"R{i}", "workers": [worker]},
            {"name": f"R{i}", "endpoints": per_group, "workers": [worker]},
        ]
    return {"name": "lifecycle", "duration_s": duration_s, "groups": groups, **extra}


def in_call(p: TestPlatform, run_id: str, count: int) -> dict[str, Any] | None:
    run = get_run(p, run_id)
    return run if run["phase_counts"]["INCALL"] >= count else None


def host_pids(worker_pid: int) -> list[int]:
    """The endpoint hosts a worker started (they run in sessions of their own)."""
    children = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{worker_pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


def statuses(run: dict[str, Any]) -> list[str]:
    return [h["status"] for h in run["history"]]


# --- validation and queue ---------------------------------------------------------------


def test_no_worker_in_the_region_cannot_run_for_now_with_the_reason(lp):
    run_id = lp.run_test(
        {
            "name": "mars",
            "duration_s": 2,
            "groups": [{"name": "A", "endpoints": 1, "region": "mars"}],
        }
    )
    run = lp.wait_status(run_id, {"CANNOT_RUN_FOR_NOW", "QUEUED", "RUNNING"}, timeout=30)
    assert run["status"] == "CANNOT_RUN_FOR_NOW"
    assert run["reason"] == (
        "no worker online in region 'mars' for group 'A'; start one with "
        "`callmeter worker` --region mars"
    )
    assert statuses(run) == ["PENDING", "CANNOT_RUN_FOR_NOW"]
    assert run["history"][-1]["reason"] == run["reason"] and run["history"][-1]["at"]


def test_a_run_waits_in_queued_while_its_workers_are_busy_then_starts(lp):
    # Two runs of 8 endpoints each, both pinned to w1 (8 slots): one at a time.
    first = lp.run_test(pairs("w1", per_group=4, duration_s=3))
    lp.wait_status(first, {"RUNNING"}, timeout=30)
    second = lp.run_test(pairs("w1", per_group=4, duration_s=3))
    # The second passes validation and waits in QUEUED (not rejected) while w1 is full.
    queued = lp.wait_status(second, {"QUEUED", "RUNNING", "CANNOT_RUN_FOR_NOW"}, timeout=30)
    assert queued["status"] == "QUEUED", queued["reason"]
    assert get_run(lp, first)["status"] == "RUNNING"
    # When the first one's endpoints finish, the second starts and completes too.
    done1 = lp.wait_status(first, {"COMPLETED", "FAILED"}, timeout=60)
    done2 = lp.wait_status(second, {"COMPLETED", "FAILED"}, timeout=60)
    assert (done1["status"], done2["status"]) == ("COMPLETED", "COMPLETED")
    assert statuses(done2) == ["PENDING", "QUEUED", "RUNNING", "COMPLETED"]
    assert done2["started_at"] > done1["started_at"]
    assert {e["outcome"] for e in done1["endpoints"] + done2["endpoints"]} == {"SUCCESS"}


# --- stop early ----------------------------------------------------------------------


def test_stop_early_goes_through_stopping_to_completed_with_the_data_kept(lp):
    run_id = lp.run_test(pairs("w1", "w2", per_group=2, duration_s=60))
    wait_until("4 calls up", lambda: in_call(lp, run_id, 8), timeout=60)
    time.sleep(2)  # a few seconds of samples
    t0 = time.monotonic()
    status, body = lp.request("POST", f"/api/v1/runs/{run_id}/stop")
    assert (status, body) == (202, {"id": run_id, "stop_requested": True})
    run = lp.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=30)
    stop_s = time.monotonic() - t0
    assert (run["status"], run["stopped"]) == ("COMPLETED", True)
    assert statuses(run) == ["PENDING", "QUEUED", "RUNNING", "STOPPING", "COMPLETED"]
    assert run["reason"] == "stopped by the user; everything measured until then is kept"
    # Every endpoint has an outcome, calls hung up cleanly, and the samples are kept.
    assert all(e["outcome"] in ("SUCCESS", "COMPLETED_WITH_WARNINGS") for e in run["endpoints"]), (
        run["endpoints"]
    )
    assert run["summary"]["samples"] >= 8  # metrics measured before the stop are kept
    assert stop_s < 15, stop_s
    # Stopping twice is refused, clearly.
    status, body = lp.request("POST", f"/api/v1/runs/{run_id}/stop")
    assert status == 409 and body["error"]["code"] == "run_finished"


# --- control services killed mid-run --------------------------------------------------


def test_scheduler_killed_mid_run_restarts_and_completes_the_run(lp):
    run_id = lp.run_test(pairs("w1", "w2", per_group=2, duration_s=3))
    lp.wait_status(run_id, {"RUNNING"}, timeout=30)
    lp.kill("scheduler")
    # The run goes on without it: every endpoint finishes, nobody declares completion.
    wait_until(
        "all endpoints finished",
        lambda: all(e["outcome"] for e in get_run(lp, run_id)["endpoints"]),
        timeout=60,
    )
    assert get_run(lp, run_id)["status"] == "RUNNING"
    # The restarted scheduler rebuilds from the log and takes the missing decision.
    lp.restart("scheduler")
    run = lp.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert statuses(run) == ["PENDING", "QUEUED", "RUNNING", "COMPLETED"]
    assert {e["id"]: e["outcome"] for e in run["endpoints"]} == {
        e: "SUCCESS" for e in ("C1-1", "C1-2", "R1-1", "R1-2", "C2-1", "C2-2", "R2-1", "R2-2")
    }


def test_dispatcher_killed_between_receivers_and_callers_restarts_and_dispatches_callers(lp):
    # A 4 s buildup staggers the receivers, so the callers are held back for a while.
    run_id = lp.run_test(pairs("w1", "w2", per_group=2, duration_s=3, buildup_s=4))
    lp.wait_status(run_id, {"RUNNING"}, timeout=30)
    lp.kill("dispatcher")
    run = get_run(lp, run_id)
    callers = [e for e in run["endpoints"] if e["role"] == "caller"]
    assert all(e["worker_id"] is None for e in callers), callers  # not dispatched yet
    time.sleep(3)  # receivers register while no dispatcher is there to notice
    lp.restart("dispatcher")
    run = lp.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED"
    eps = endpoints(run)
    assert {k: e["outcome"] for k, e in eps.items()} == {k: "SUCCESS" for k in eps}
    # Each caller dialled its own receiver's contact URI, given after the restart.
    assert eps["C1-2"]["target_uri"] == eps["R1-2"]["contact_uri"] is not None
    assert eps["C2-1"]["target_uri"] == eps["R2-1"]["contact_uri"] is not None


# --- workers lost -------------------------------------------------------------------------


def test_a_worker_lost_and_back_does_not_corrupt_the_run(lp):
    run_id = lp.run_test(pairs("w1", "w2", duration_s=10))
    wait_until("2 calls up", lambda: in_call(lp, run_id, 4), timeout=60)
    # w2's supervisor freezes (its hosts go on): no heartbeats, so it is declared lost.
    worker = lp.procs["w2"]
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        run = wait_until(
            "w2's endpoints lost",
            lambda: (
                (r := get_run(lp, run_id))
                and all(endpoints(r)[e]["outcome"] == "WORKER_LOST" for e in ("C2-1", "R2-1"))
                and r
            ),
            timeout=30,
        )
        assert workers_by_id(lp)["w2"]["status"] == "LOST"
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    # It comes back and reports what its endpoints did meanwhile: recorded as late.
    wait_workers_online(lp, ("w2",))
    run = lp.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    eps = wait_until(
        "late events recorded",
        lambda: (e := endpoints(get_run(lp, run_id))) and e["C2-1"]["late_events"] > 0 and e,
        timeout=30,
    )
    assert run["status"] == "COMPLETED"
    assert {k: e["outcome"] for k, e in eps.items()} == {
        "C1-1": "SUCCESS",
        "R1-1": "SUCCESS",
        "C2-1": "WORKER_LOST",
        "R2-1": "WORKER_LOST",
    }
    assert eps["C2-1"]["reason"] == "worker w2 lost before this endpoint finished"
    assert get_run(lp, run_id)["outcome_counts"] == {"SUCCESS": 2, "WORKER_LOST": 2}


def test_one_of_three_workers_killed_its_endpoints_are_lost_the_rest_succeed(lp):
    run_id = lp.run_test(pairs("w1", "w2", "w3", per_group=2, duration_s=6))
    wait_until("6 calls up", lambda: in_call(lp, run_id, 12), timeout=60)
    # The whole w3 machine dies: supervisor and endpoint hosts, kill -9.
    hosts = host_pids(lp.procs["w3"].pid)
    lp.kill("w3")
    for pid in hosts:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run = lp.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert run["status"] == "COMPLETED"
    outcomes = {k: e["outcome"] for k, e in endpoints(run).items()}
    assert outcomes == {
        **{f"{g}{n}-{i}": "SUCCESS" for g in "CR" for n in (1, 2) for i in (1, 2)},
        **{f"{g}3-{i}": "WORKER_LOST" for g in "CR" for i in (1, 2)},
    }
    assert workers_by_id(lp)["w3"]["status"] == "LOST"
