"""protocol_options: defaults, registrar/account/scenario normalisation, and each class of error."""

import pytest

from callmeter_worker import protocol as proto
from callmeter_worker import protocol_options as opts
from callmeter_worker.supervisor.translate import to_events


def test_options_default_to_a_plain_phone():
    assert opts.options(None) == opts.DEFAULT_OPTIONS
    assert opts.options({"prack": "required"})["prack"] == "required"


def test_registrar_fills_defaults():
    reg = opts.registrar({"host": "127.0.0.1"})
    assert reg == {
        "host": "127.0.0.1",
        "port": 5060,
        "transport": "udp",
        "domain": None,
        "outbound_proxy": None,
        "expires_s": 300,
    }
    assert opts.registrar(None) is None


def test_scenario_is_sorted_by_time():
    steps = opts.scenario([{"at_s": 3, "action": "resume"}, {"at_s": 1, "action": "hold"}])
    assert [s["action"] for s in steps] == ["hold", "resume"]


@pytest.mark.parametrize(
    ("fn", "block", "word"),
    [
        (opts.options, {"prack": "sometimes"}, "prack"),
        (opts.options, {"bogus": 1}, "unknown"),
        (opts.options, {"invite_timeout_s": 0}, "invite_timeout_s"),
        (opts.registrar, {"host": "a b"}, "registrar.host"),
        (opts.registrar, {"host": "h", "transport": "sctp"}, "transport"),
        (opts.account, {"password": "x"}, "username"),
        (opts.scenario, [{"at_s": 1, "action": "dtmf", "digits": "12x"}], "digits"),
        (opts.scenario, [{"at_s": 1, "action": "update_media"}], "codec"),
        (opts.scenario, [{"at_s": 1, "action": "explode"}], "action"),
    ],
)
def test_errors_name_the_field(fn, block, word):
    with pytest.raises(opts.OptionError, match=word):
        fn(block)


def test_register_messages_are_attributed_by_their_to_user():
    text = (
        "SIP/2.0 401 Unauthorized\r\nTo: <sip:alice@callmeter.test>;tag=1\r\nCSeq: 2 REGISTER\r\n"
    )
    assert proto.is_register(text) and proto.to_user(text) == "alice"
    assert not proto.is_register("INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n")


def test_registration_events_translate_once():
    base = {
        "endpoint_id": "A-1",
        "contact_uri": "sip:a1@d",
        "time_to_register_ms": 3.5,
        "expires_s": 60,
    }
    first = to_events("r1", proto.event("registered", refresh=0, **base))
    assert [type(e).__name__ for e in first] == ["EndpointRegistered", "EndpointPhaseChanged"]
    assert first[0].time_to_register_ms == 3.5 and first[0].expires_s == 60
    assert to_events("r1", proto.event("registered", refresh=1, **base)) == []
    failed = to_events(
        "r1", proto.event("registration_failed", endpoint_id="A-1", code=401, reason="Unauthorized")
    )
    assert failed[0].sip_code == 401 and type(failed[0]).__name__ == "RegistrationFailed"


def test_scenario_and_dtmf_events_translate():
    act = to_events(
        "r1",
        proto.event(
            "scenario_action",
            endpoint_id="A-1",
            action="hold",
            ok=True,
            detail="re-INVITE sendonly",
        ),
    )
    assert act[0].action == "hold" and act[0].ok is True
    dtmf = to_events(
        "r1", proto.event("dtmf_received", endpoint_id="B-1", digits="5", method="info")
    )
    assert (dtmf[0].digits, dtmf[0].method) == ("5", "info")
