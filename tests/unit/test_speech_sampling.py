"""Which calls are scored with PESQ, what the dispatcher tells their receivers, and how
a score lands on the endpoint. Pure: no servers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter_dispatcher.dispatch import endpoint_config
from callmeter_events import (
    EndpointFinished,
    RunCreated,
    SpeechQualityMeasured,
    decode,
    encode,
)
from callmeter_events import TestDefinition as Definition
from callmeter_projections import RunsProjection
from callmeter_projections.endpoints import initial_endpoints
from callmeter_projections.runs import RunState
from callmeter_worker.supervisor.scorer import record_seconds

SHA = "sha256:" + "ab" * 32


def definition(**over) -> Definition:  # type: ignore[no-untyped-def]
    groups = [
        {"name": "A", "endpoints": 4, "calls": "B", "audio": "speech-en"},
        {"name": "B", "endpoints": 4},
        {"name": "C", "endpoints": 2, "calls": "D", "audio": SHA},
        {"name": "D", "endpoints": 1},
        {"name": "E", "endpoints": 2, "calls": "F"},  # plays the tone: nothing to score
        {"name": "F", "endpoints": 2},
    ]
    return Definition.model_validate({"name": "t", "duration_s": 30, "groups": groups, **over})


def test_a_few_receivers_per_run_are_sampled_against_their_callers_audio():
    assert definition().speech_samples() == {
        "B-1": "speech-en",
        "B-2": "speech-en",
        "B-3": "speech-en",
    }
    # Two callers of C share D-1 (the dispatcher pairs caller n with receiver n mod size).
    assert definition(speech_quality_calls=10).speech_samples() == {
        **{f"B-{i}": "speech-en" for i in range(1, 5)},
        "D-1": SHA,
    }
    assert definition(speech_quality_calls=0).speech_samples() == {}


def test_audio_references_and_the_sample_count_are_validated_with_the_field_named():
    with pytest.raises(ValidationError, match="groups.0.audio"):
        definition(groups=[{"name": "A", "endpoints": 1, "audio": "song.wav"}])
    with pytest.raises(ValidationError, match="speech_quality_calls"):
        definition(speech_quality_calls=-1)


def test_the_dispatcher_gives_senders_their_audio_and_sampled_receivers_the_reference():
    d = definition()
    run = RunState("r", "t", d)
    eps = {e.endpoint_id: e for e in initial_endpoints("r", d)}
    a1, b1, b4 = (endpoint_config(run, eps[e], None) for e in ("A-1", "B-1", "B-4"))
    assert (a1.audio, a1.speech_reference) == ("speech-en", None)
    assert (b1.audio, b1.speech_reference) == (None, "speech-en")
    assert b4.speech_reference is None  # past speech_quality_calls


def test_a_score_lands_on_its_endpoint_before_the_end_and_round_trips():
    event = SpeechQualityMeasured(
        run_id="r",
        endpoint_id="B-1",
        mos_lqo=4.31,
        mode="nb",
        codec="PCMU/8000",
        seconds=8.0,
        reference="speech-en",
    )
    assert decode(encode(event)) == event
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=definition()))
    p.apply(2, event)
    p.apply(3, EndpointFinished(run_id="r", endpoint_id="B-1", outcome="SUCCESS"))
    b1 = p.endpoints["r"]["B-1"]
    assert (b1.mos_lqo, b1.mos_lqo_mode, b1.mos_lqo_error, b1.outcome) == (
        4.31,
        "nb",
        None,
        "SUCCESS",
    )
    failed = SpeechQualityMeasured(
        run_id="r",
        endpoint_id="B-2",
        reference="speech-en",
        error="a 3 s call is too short to score",
    )
    p.apply(4, failed)
    assert p.endpoints["r"]["B-2"].mos_lqo_error == failed.error


@pytest.mark.parametrize(("duration", "seconds"), [(30, 10.0), (8, 6.5), (4.5, 3.0), (4, None)])
def test_recording_length_follows_the_call_and_p862s_wish_for_8_to_12_s(duration, seconds):
    assert record_seconds(duration) == seconds
