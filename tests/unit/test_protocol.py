"""protocol: round trips, defaults and every class of error."""

import copy
import json

import pytest

from callmeter_vocabulary.sample import FIELDS, make
from callmeter_worker import protocol as proto
from callmeter_worker.protocol import ProtocolError


def _start(**over):
    cmd = {
        "op": "start_endpoint",
        "endpoint_id": "e1",
        "role": "caller",
        "codecs": ["PCMU"],
        "duration_s": 5,
        "target_uri": "sip:r1@127.0.0.1:5070",
        "username": "c1",
        "drop_tx_pct": 0,
        "drop_rx_pct": 0,
    }
    cmd.update(over)
    return cmd


@pytest.mark.parametrize(
    "msg",
    [
        _start(),
        _start(role="receiver", target_uri=None),
        {"op": "hangup", "endpoint_id": "e1"},
        {"op": "shutdown"},
        proto.event("host_ready", sip_port=5060),
        proto.event("phase", endpoint_id="e1", phase="INCALL"),
        proto.event(
            "sample",
            endpoint_id="e1",
            sample=make("e1", "recv", 0, {"mos": 4.4, "packets": 50, "codec": "PCMU"}),
        ),
        proto.event(
            "endpoint_finished", endpoint_id="e1", outcome="SUCCESS", reason="", sip_code=200
        ),
        proto.event("call_failed", endpoint_id="e1", code=None, reason="x"),
        proto.event("call_attempted", endpoint_id="e1", target_uri="sip:r1@127.0.0.1:5070"),
        proto.event(
            "endpoint_finished",
            endpoint_id="e1",
            outcome="NO_INCOMING_CALL",
            reason="",
            sip_code=None,
        ),
        proto.event("sip_message", endpoint_id=None, direction="in", text="OPTIONS ..."),
        proto.event("heartbeat", calls=0, accounts=0),
    ],
)
def test_round_trip(msg):
    line = proto.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    # the reader validates, filling a command's defaults (validate does it in place)
    assert proto.decode_line(line) == proto.validate(copy.deepcopy(msg))


def test_defaults_filled_for_start_endpoint():
    cmd = _start()
    del cmd["drop_tx_pct"], cmd["drop_rx_pct"]
    cmd["role"], cmd["target_uri"] = "receiver", None
    out = proto.decode_line(json.dumps(cmd).encode())
    assert out["drop_tx_pct"] == 0 and out["drop_rx_pct"] == 0
    assert out["call_wait_s"] == 5 + proto.NO_CALL_MARGIN_S  # duration + margin
    given = proto.decode_line(json.dumps({**cmd, "call_wait_s": 42}).encode())
    assert given["call_wait_s"] == 42


def test_wait_until_carries_a_receivers_first_call_deadline():
    msg = {"op": "wait_until", "endpoint_id": "r/B-1", "until_t": 1767000000.5}
    assert proto.decode_line(proto.encode(msg)) == msg


def test_event_has_time():
    ev = proto.event("heartbeat", calls=1, accounts=2)
    assert ev["ev"] == "heartbeat" and isinstance(ev["t"], float)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1,2]",
        b'{"x":1}',
        b'{"op":"dance"}',
        b'{"op":"hangup"}',
        b'{"op":"hangup","endpoint_id":""}',
        b'{"op":"wait_until","endpoint_id":"r/B-1"}',  # no until_t
        b'{"op":"wait_until","endpoint_id":"r/B-1","until_t":0}',
        b'{"op":"wait_until","endpoint_id":"r/B-1","until_t":"later"}',
        json.dumps(_start(role="boss")).encode(),
        json.dumps(_start(codecs=[])).encode(),
        json.dumps(_start(codecs="PCMU")).encode(),
        json.dumps(_start(duration_s=0)).encode(),
        json.dumps(_start(duration_s=True)).encode(),
        json.dumps(_start(username="a@b")).encode(),
        json.dumps(_start(target_uri=None)).encode(),  # caller without target
        json.dumps(_start(target_uri="http://x")).encode(),
        json.dumps(_start(drop_tx_pct=101)).encode(),
        json.dumps(_start(call_wait_s=0)).encode(),
        json.dumps(_start(call_wait_s="long")).encode(),
        json.dumps({k: v for k, v in _start().items() if k != "username"}).encode(),
        b'{"ev":"nope","t":1}',
        b'{"ev":"heartbeat","calls":1,"accounts":1}',  # no t
        b'{"ev":"phase","t":1,"endpoint_id":"e","phase":"DANCING"}',
        b'{"ev":"endpoint_finished","t":1,"endpoint_id":"e","outcome":"WIN","reason":"","sip_code":null}',
        b"x" * (proto.MAX_LINE + 1),
    ],
)
def test_invalid_lines_raise_protocol_error(line):
    with pytest.raises(ProtocolError):
        proto.decode_line(line)


def test_a_bad_event_a_host_writes_is_refused_by_its_reader():
    line = proto.encode({"ev": "phase", "t": 1.0, "endpoint_id": "e"})  # no phase
    with pytest.raises(ProtocolError, match="'phase'"):
        proto.decode_line(line)
    with pytest.raises(TypeError):  # a key outside the catalogue
        make("e", "send", 0, {"moss": 4.4})


def test_a_sample_line_is_checked_against_the_contract_naming_the_field():
    line = proto.encode(proto.event("sample", endpoint_id="e", sample=make("e", "send", 0, {})))
    cells = json.loads(line)
    cells["sample"][FIELDS.index("packets")] = 49.5
    with pytest.raises(ProtocolError, match="packets: Expected `int | null`, got `float`"):
        proto.decode_line(json.dumps(cells, separators=(",", ":")).encode())
    # What JSON cannot hold is not a number: NaN and infinity are written as null.
    nan = make("e", "send", 0, {"mos": float("nan"), "jitter_ms": float("inf")})
    decoded = proto.decode_line(proto.encode(proto.event("sample", endpoint_id="e", sample=nan)))
    assert (decoded["sample"].mos, decoded["sample"].jitter_ms) == (None, None)


def test_parse_sip_log_entry():
    entry = (
        "pjsua_core.c  .TX 512 bytes Request msg INVITE/cseq=7 (tdta0x1) to UDP 127.0.0.1:5060:\n"
        "INVITE sip:r0@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062\r\n"
        "Call-ID: abc-123\r\nCSeq: 7 INVITE\r\n\r\n\n--end msg--"
    )
    direction, text, call_id = proto.parse_sip_log(entry)
    assert direction == "out" and call_id == "abc-123"
    assert text.startswith("INVITE sip:r0@") and "--end msg--" not in text
    rx = entry.replace(".TX 512", ".RX 512").replace("Call-ID:", "i:")
    assert proto.parse_sip_log(rx)[0] == "in" and proto.parse_sip_log(rx)[2] == "abc-123"
    assert proto.parse_sip_log("sip_endpoint.c  .Module registered") is None


def test_messages_of_a_dialog_inside_one_host_go_to_the_right_side():
    from callmeter_worker.protocol import dialog_side_user

    invite = "INVITE sip:b-1@127.0.0.1:5062 SIP/2.0\r\nFrom: <sip:a-1@127.0.0.1>;tag=x\r\nTo: <sip:b-1@127.0.0.1>\r\n"
    ringing = "SIP/2.0 180 Ringing\r\nFrom: <sip:a-1@127.0.0.1>;tag=x\r\nTo: <sip:b-1@127.0.0.1>;tag=y\r\n"
    callee_bye = "BYE sip:a-1@127.0.0.1 SIP/2.0\r\nFrom: <sip:b-1@127.0.0.1>;tag=y\r\nTo: <sip:a-1@127.0.0.1>;tag=x\r\n"
    # The caller sends the INVITE and receives the 180; the callee the other way round.
    assert dialog_side_user(invite, "out") == "a-1"
    assert dialog_side_user(invite, "in") == "b-1"
    assert dialog_side_user(ringing, "in") == "a-1"
    assert dialog_side_user(ringing, "out") == "b-1"
    # A BYE from the callee belongs to the callee when sent, to the caller when received.
    assert dialog_side_user(callee_bye, "out") == "b-1"
    assert dialog_side_user(callee_bye, "in") == "a-1"
