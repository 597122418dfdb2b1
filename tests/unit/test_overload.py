"""Generator overload: the decision from one second's figures, the fold, the banner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callmeter_api.endpoint_views import ListQuery, endpoint_page
from callmeter_api.pages import render_block
from callmeter_api.views import run_view
from callmeter_events import (
    GeneratorOverloaded,
    RunCreated,
    RunStarted,
    decode,
    encode,
)
from callmeter_events import TestDefinition as Definition
from callmeter_projections import RunsProjection
from callmeter_projections.documents import run_state, to_doc
from callmeter_vocabulary.sample import SampleHead, make
from callmeter_worker.supervisor.health import HealthMonitor, cpu_seconds
from callmeter_worker.supervisor.overload import HealthFigures, OverloadJudge, OverloadLimits

T0 = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
CALM = HealthFigures(host_cpu=0.3, loop_lag_ms=4.0, late_hosts=0, tx_expected=1000.0, tx_sent=998)


def judge(**limits: float) -> OverloadJudge:
    return OverloadJudge(OverloadLimits(**limits))  # type: ignore[arg-type]


def test_a_calm_worker_is_never_flagged():
    j = judge()
    assert [j.observe(CALM) for _ in range(120)] == [None] * 120


def test_a_limit_crossed_for_sustain_seconds_in_a_row_is_an_overload():
    j = judge(sustain_s=3)
    hot = HealthFigures(host_cpu=0.97, tx_expected=1000.0, tx_sent=1000)
    assert j.observe(hot) is None and j.observe(hot) is None
    reason = j.observe(hot)
    assert reason == ("endpoint hosts used 97% of the machine's cores (limit 50%), 3 s in a row")


def test_sustain_counts_seconds_by_the_clock_not_by_measurements():
    j = judge(sustain_s=3)
    starved = HealthFigures(loop_lag_ms=1500.0, interval_s=2.5)  # measured 2.5 s apart
    assert j.observe(starved) is None
    assert str(j.observe(starved)).endswith("5 s in a row")


def test_a_calm_second_restarts_the_count():
    j = judge(sustain_s=3)
    lag = HealthFigures(loop_lag_ms=900.0)
    assert [j.observe(f) for f in (lag, lag, CALM, lag, lag)] == [None] * 5
    assert j.observe(lag) is not None and "event loop woke 900 ms late" in str(j.observe(lag))


def test_packets_the_media_clock_skipped_are_judged_only_over_enough_packets():
    j = judge(sustain_s=1)
    skipped = HealthFigures(tx_expected=1000.0, tx_sent=800)
    assert skipped.tx_deficit == pytest.approx(0.2)
    assert j.observe(skipped) == (
        "20.0% of the RTP packets due were not sent (800 of 1000; limit 5%), 1 s in a row"
    )
    # one stream's second (50 due) wobbles by a packet or two: not judged
    assert j.observe(HealthFigures(tx_expected=50.0, tx_sent=45)) is None
    assert HealthFigures().tx_deficit is None  # nothing due: unknown, not 0
    assert HealthFigures(tx_expected=100.0, tx_sent=104).tx_deficit == 0.0


def test_late_hosts_and_the_first_crossing_is_the_reason():
    j = judge(sustain_s=1, late_hosts=0)
    reason = j.observe(HealthFigures(late_hosts=2, loop_lag_ms=800.0))
    assert reason is not None and reason.startswith("the supervisor's event loop woke 800 ms")
    assert j.crossed(HealthFigures(late_hosts=2))["late_hosts"] == (
        "2 endpoint hosts missed their heartbeats"
    )


def sample(seq: int, **metrics: float) -> SampleHead:
    return make("A-1", "send", seq, metrics, T0)


class _NoHosts:
    hosts: dict[str, object] = {}


def test_send_samples_add_up_to_the_packets_due_and_sent():
    monitor = HealthMonitor(_NoHosts(), late_s=2.5)  # type: ignore[arg-type]
    every = {"sample_interval_ms": 1000.0, "ptime_ms": 20}
    monitor.on_sample(sample(0, packets=70, **every))  # first: the call so far, skipped
    monitor.on_sample(sample(1, packets=45, simulated_drops=3, **every))
    monitor.on_sample(sample(2, packets=0, **every))  # sent nothing: on hold, skipped
    monitor.on_sample(sample(3, packets=40, sample_interval_ms=1200.0, ptime_ms=20))
    recv = make("A-1", "recv", 5, {"packets": 1}, T0)
    monitor.on_sample(recv)
    f = monitor.take()
    assert (f.tx_expected, f.tx_sent, f.host_cpu, f.late_hosts) == (110.0, 88, None, 0)
    assert monitor.take().tx_expected == 0.0  # each take starts a new second


def test_cpu_seconds_reads_this_process_and_none_for_a_gone_one():
    mine = cpu_seconds(__import__("os").getpid())
    assert mine is not None and mine > 0
    assert cpu_seconds(2**22 + 7) is None


PAIR = Definition.model_validate(
    {
        "name": "pair",
        "duration_s": 5,
        "groups": [{"name": "A", "endpoints": 1, "calls": "B"}, {"name": "B", "endpoints": 1}],
    }
)


def overloaded(worker: str, s: float, reason: str = "hot") -> GeneratorOverloaded:
    return GeneratorOverloaded(
        run_id="r",
        worker_id=worker,
        reason=reason,
        figures={"host_cpu": 0.97, "tx_deficit": None},
        occurred_at=T0 + timedelta(seconds=s),
    )


def test_the_run_keeps_each_workers_first_overload_and_round_trips_as_a_document():
    p = RunsProjection()
    events = [
        RunCreated(run_id="r", test_id="t", definition=PAIR, occurred_at=T0),
        RunStarted(run_id="r"),
        overloaded("w2", 9),
        overloaded("w1", 5),
        overloaded("w2", 12, "again"),
    ]
    for seq, event in enumerate(events, 1):
        p.apply(seq, decode(encode(event)))
    run = p.runs["r"]
    assert [(o.worker_id, o.reason) for o in run.overloads] == [("w2", "hot"), ("w1", "hot")]
    assert run.overloaded_since is not None and run.overloaded_since.worker_id == "w1"
    assert run_state(to_doc(run)) == run
    assert overloaded("w1", 5).msg_id() == overloaded("w1", 7).msg_id()  # one per run, worker


def test_the_run_page_warns_that_results_after_the_overload_are_not_trustworthy():
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=PAIR, occurred_at=T0))
    p.apply(2, overloaded("w1", 5))
    doc = to_doc(p.runs["r"])
    view = run_view(doc, [], {})
    assert view["generator_overloaded"]["worker_id"] == "w1"
    html = render_block(
        "run.html",
        "live",
        run=view,
        groups=[],
        listing=endpoint_page([], {}, ListQuery()),
        elapsed_s=5,
        total_s=5,
    )
    banner = html.split('id="generator-overloaded"', 1)[1].split("</p>", 1)[0]
    assert "results after <time>2026-01-06T09:00:05Z</time> are not trustworthy" in banner
    assert "worker <code>w1</code>: hot" in banner
    calm = run_view({**doc, "overloads": []}, [], {})
    assert calm["generator_overloaded"] is None
    assert 'id="generator-overloaded"' not in render_block(
        "run.html",
        "live",
        run=calm,
        groups=[],
        listing=endpoint_page([], {}, ListQuery()),
        elapsed_s=5,
        total_s=5,
    )


class _Host:
    def __init__(self, ready: bool, silent_s: float) -> None:
        import asyncio

        self.ready = asyncio.Event()
        if ready:
            self.ready.set()
        self.lost = False
        self.proc = __import__("types").SimpleNamespace(pid=__import__("os").getpid())
        self.last_heard = __import__("time").monotonic() - silent_s


class _Pool:
    def __init__(self, *hosts: _Host) -> None:
        self.hosts = {str(i): h for i, h in enumerate(hosts)}


def test_late_hosts_are_silent_running_ones_and_ones_that_take_long_to_start():
    pool = _Pool(
        _Host(ready=True, silent_s=0.5),  # fine
        _Host(ready=True, silent_s=4.0),  # a running host's loop starved: late
        _Host(ready=False, silent_s=4.0),  # still starting after 4 s: not yet late
        _Host(ready=False, silent_s=12.0),  # not ready after 12 s: late
    )
    monitor = HealthMonitor(pool, late_s=2.5)  # type: ignore[arg-type]
    first = monitor.take()
    assert first.late_hosts == 2
    assert first.host_cpu is None  # ready hosts count from the second after they are seen
    # this process stands in for the ready hosts: burn CPU until /proc counts a tick more
    before = cpu_seconds(__import__("os").getpid())
    while cpu_seconds(__import__("os").getpid()) == before:
        sum(range(10_000))
    assert (monitor.take().host_cpu or 0) > 0
