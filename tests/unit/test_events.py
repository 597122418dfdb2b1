"""The event catalogue: subjects, dedup ids, codec round trips, upcasting, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import callmeter_events as ev
from callmeter_events import codec
from callmeter_vocabulary.metrics import CATALOGUE, KEYS

DEFINITION = ev.TestDefinition(
    name="smoke",
    duration_s=5,
    groups=[{"name": "A", "endpoints": 2, "calls": "B"}, {"name": "B", "endpoints": 2}],
)


def test_subjects_are_built_by_the_event_classes():
    assert ev.RunCompleted(run_id="r1").subject() == "callmeter.run.r1.status.completed"
    assert (
        ev.EndpointRegistered(run_id="r1", endpoint_id="B-1", contact_uri="sip:b@h").subject()
        == "callmeter.run.r1.endpoint.B-1.registered"
    )
    assert ev.WorkerHeartbeat(worker_id="w1", capacity=4, free_slots=4, load=0).subject() == (
        "callmeter.worker.w1.heartbeat"
    )
    sample = ev.MetricSample(
        run_id="r1", endpoint_id="A-1", direction="recv", seq=0, ts=datetime.now(UTC), metrics={}
    )
    assert sample.subject() == "callmeter.metrics.r1.A-1"
    assigned = ev.EndpointAssigned(
        run_id="r1",
        endpoint_id="A-1",
        worker_id="w1",
        config=ev.EndpointConfig(
            group="A", role="caller", codecs=["PCMU"], duration_s=5, username="a"
        ),
    )
    assert assigned.subject() == "callmeter.run.r1.worker.w1.assigned"


def test_every_event_type_is_in_the_one_union_and_lands_on_its_stream():
    streams = {sd.name: sd for sd in ev.ALL_STREAMS}
    for cls in ev.EVENT_TYPES:
        assert cls.__name__ in ev.BY_TYPE
        assert cls.stream in streams


def test_the_same_fact_gets_the_same_msg_id_whoever_derives_it():
    # A scheduler restarted mid-run derives "run completed" again: JetStream must drop it.
    first, again = ev.RunCompleted(run_id="r1"), ev.RunCompleted(run_id="r1")
    assert first.msg_id() == again.msg_id()
    assert ev.RunCompleted(run_id="r2").msg_id() != first.msg_id()
    # Events that are new each time get fresh ids.
    a = ev.EndpointPhaseChanged(run_id="r1", endpoint_id="A-1", phase="CALLING")
    b = ev.EndpointPhaseChanged(run_id="r1", endpoint_id="A-1", phase="CALLING")
    assert a.msg_id() != b.msg_id()


def test_codec_round_trips_every_kind_of_event():
    samples = [
        ev.TestSaved(test_id="t1", definition=DEFINITION),
        ev.RunCreated(run_id="r1", test_id="t1", definition=DEFINITION),
        ev.RunRejected(run_id="r1", reason="no worker online"),
        ev.RunSamplesStored(run_id="r1", samples=1200, metrics_seq=4711),
        ev.RunDispatching(run_id="r1", worker_ids=["w1"], plan={"A-1": "w1"}),
        ev.EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="CALL_FAILED", sip_code=486),
        ev.WorkerLost(worker_id="w1", reason="missed 3 heartbeats", last_seq=7),
        ev.MetricSample(
            run_id="r1",
            endpoint_id="A-1",
            direction="send",
            seq=3,
            ts=datetime.now(UTC),
            metrics={"mos": 4.4, "packets": 50, "codec": "PCMU", "jitter_ms": None},
        ),
        ev.SipMessage(
            run_id="r1", endpoint_id="A-1", direction="out", ts=datetime.now(UTC), text="INVITE"
        ),
    ]
    for event in samples:
        assert ev.decode(ev.encode(event)) == event


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "NoSuchEvent"}',
        b'{"type": "RunFailed", "run_id": "r"}',
        b'{"type": "EndpointFinished", "run_id": "r", "endpoint_id": "A-1", "outcome": "MAYBE"}',
    ],
)
def test_malformed_payloads_raise_one_clear_error(payload):
    with pytest.raises(ev.EventDecodeError):
        ev.decode(payload)


def test_unknown_metric_keys_are_refused():
    with pytest.raises(ValueError, match="unknown metric keys: made_up"):
        ev.MetricSample(
            run_id="r",
            endpoint_id="A-1",
            direction="recv",
            seq=0,
            ts=datetime.now(UTC),
            metrics={"made_up": 1.0},
        )


def test_old_versions_are_upcast_when_read(monkeypatch):
    # Pretend RunRejected is now at v2, whose `reason` must start with "v2:".
    fields = ev.RunRejected.model_fields["schema_version"]
    monkeypatch.setattr(fields, "default", 2)
    monkeypatch.setitem(
        codec.UPCASTERS, ("RunRejected", 1), lambda p: {**p, "reason": "v2:" + p["reason"]}
    )
    stored = {"type": "RunRejected", "run_id": "r", "reason": "busy", "schema_version": 1}
    decoded = ev.decode(json.dumps(stored).encode())
    assert decoded.reason == "v2:busy" and decoded.schema_version == 2
    # Without an upcaster for a version, decoding says so instead of guessing.
    monkeypatch.delitem(codec.UPCASTERS, ("RunRejected", 1))
    with pytest.raises(ev.EventDecodeError, match="no upcaster"):
        ev.decode(json.dumps(stored).encode())


def test_catalogue_has_150_values_per_endpoint_per_second():
    assert len(KEYS) == len(set(KEYS))
    assert 2 * len(KEYS) >= 150
    assert {"mos", "r_factor", "jitter_ms", "rtt_ms", "fraction_lost", "packets"} <= set(KEYS)
    assert all(m.unit is not None and m.source for m in CATALOGUE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"groups": []}, "groups"),
        ({"duration_s": 0}, "duration_s"),
        ({"groups": [{"name": "A", "endpoints": 1, "calls": "Z"}]}, "groups.0.calls"),
        ({"groups": [{"name": "A", "endpoints": 1, "calls": "A"}]}, "groups.0.calls"),
        (
            {"groups": [{"name": "A", "endpoints": 1}, {"name": "A", "endpoints": 1}]},
            "groups.1.name",
        ),
        ({"groups": [{"name": "bad.name", "endpoints": 1}]}, "name"),
    ],
)
def test_invalid_definitions_name_the_field(change, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        ev.TestDefinition.model_validate({**DEFINITION.model_dump(), **change})


def test_the_metric_reference_page_is_up_to_date():
    from pathlib import Path

    from callmeter_events.docs import render

    page = Path(__file__).parents[2] / "docs" / "metrics.md"
    assert page.read_text() == render(), "run: python -m callmeter_events.docs > docs/metrics.md"


def test_the_asyncapi_document_is_current_and_matches_real_subjects():
    import re
    from pathlib import Path

    from callmeter_events.asyncapi import document

    doc = document()
    page = Path(__file__).parents[2] / "docs" / "asyncapi.json"
    assert json.loads(page.read_text()) == json.loads(json.dumps(doc)), (
        "run: python -m callmeter_events.asyncapi > docs/asyncapi.json"
    )
    assert set(doc["channels"]) == set(ev.BY_TYPE)
    examples = [
        ev.RunCompleted(run_id="r1"),
        ev.EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="SUCCESS"),
        ev.CallProgress(run_id="r1", endpoint_id="A-1", sip_code=180),
        ev.WorkerLost(worker_id="w1", reason="x"),
        ev.TestDeleted(test_id="t1"),
    ]
    for event in examples:
        address = doc["channels"][type(event).__name__]["address"]
        pattern = re.sub(r"\\\{[a-z_]+\\\}", r"[^.]+", re.escape(address))
        assert re.fullmatch(pattern, event.subject()), (address, event.subject())
