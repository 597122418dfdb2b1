"""A probe execution the platform failed under is not judged: its target's owners are
not paged for the load generator's failure."""

from __future__ import annotations

from callmeter_api.probe_core import judge, platform_fault


def test_endpoints_lost_by_the_platform_leave_the_execution_unjudged() -> None:
    why = platform_fault({"SUCCESS": 1, "WORKER_LOST": 1}, [])
    assert why == "not judged: the platform failed (1 WORKER_LOST)"
    judged = judge({"call_success_rate": 50.0}, [], ["call_success_rate >= 100"], True, why)
    assert judged.health is None and judged.reason == why
    assert "1 OSERROR" in platform_fault({"OSERROR": 1, "CALL_FAILED": 1}, [])


def test_a_platform_outage_during_the_run_leaves_it_unjudged() -> None:
    why = platform_fault({"SUCCESS": 2}, ["NATS unreachable from 10:00:01 to 10:00:09"])
    assert why.startswith("not judged: platform outage during the run (NATS")


def test_the_targets_own_failures_are_judged() -> None:
    assert platform_fault({"CALL_FAILED": 1, "REGISTRATION_FAILED": 1, "SUCCESS": 2}, []) == ""
    judged = judge({"call_success_rate": 50.0}, [], ["call_success_rate >= 100"], True, "")
    assert judged.health == "UNHEALTHY"
