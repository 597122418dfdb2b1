"""A host's stderr: the rate limit, the kept assertion, and the reason its endpoints get;
when a host that says nothing is taken for dead."""

from __future__ import annotations

from callmeter_events import lost_host
from callmeter_worker.supervisor.hostlog import MAX_LINE, HostOutput, exit_reason

ABORT = (
    "python: ../src/pj/ioqueue_select.c:386: pj_ioqueue_register_sock2: Assertion "
    "`!pj_list_empty(&ioqueue->free_list)' failed."
)


def test_a_flood_is_cut_to_the_burst_then_the_rate_and_the_rest_counted():
    out = HostOutput(rate_per_s=10.0, burst=50)
    logged = [out.feed(f"packet dump {i}\n", 100.0) for i in range(2_000)]  # one instant
    assert sum(x is not None for x in logged) == 50
    assert out.take_suppressed() == 1_950 and out.take_suppressed() == 0
    later = [out.feed("x", 100.0 + t / 100) for t in range(1, 201)]  # 2 s at 100 lines/s
    assert 19 <= sum(x is not None for x in later) <= 21  # 10 lines/s
    assert out.feed("y" * 5_000, 200.0) == "y" * MAX_LINE


def test_the_assertion_is_kept_and_always_logged_even_over_the_rate():
    out = HostOutput(rate_per_s=1.0, burst=1)
    out.feed("noise", 0.0)
    assert out.feed(ABORT + "\n", 0.0) is not None
    assert out.assertion == (
        "pj_ioqueue_register_sock2: Assertion `!pj_list_empty(&ioqueue->free_list)' failed"
    )
    assert out.tail[-1] == ABORT


def test_the_reason_says_how_the_host_ended_and_names_it():
    out = HostOutput()
    out.feed(
        "python: ../src/pjsip/sip_transport.c:861: pjsip_rx_data_free_cloned: "
        "Assertion `rdata' failed.",
        0.0,
    )
    reason = exit_reason("h3", -6, out.assertion)
    assert reason == (
        "endpoint host h3 was killed by SIGABRT: pjsip_rx_data_free_cloned: "
        "Assertion `rdata' failed"
    )
    assert lost_host(reason) == "h3"
    assert exit_reason("h4", 2, None) == "endpoint host h4 exited with code 2"
    assert lost_host("endpoint host refused it: host full") is None


def test_a_host_is_given_its_start_time_before_the_silence_limit_applies():
    from callmeter_worker.supervisor.hostpool import silence_verdict

    # starting: pjsua2's import and library start may take seconds on a busy machine
    assert silence_verdict(False, 6.0, silence_s=5.0, start_s=20.0) is None
    assert silence_verdict(False, 20.5, 5.0, 20.0) == "not ready 20 s after its start"
    # ready: 5 s without a word is a dead host
    assert silence_verdict(True, 4.9, 5.0, 20.0) is None
    assert silence_verdict(True, 5.1, 5.0, 20.0) == "went silent for 5 s"
