"""Host protocol messages -> platform events. Pure: no I/O, no pjsua2."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callmeter_events import (
    CallAttempted,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRecorded,
    DtmfReceived,
    EndpointFinished,
    EndpointPhaseChanged,
    EndpointRegistered,
    Event,
    Phase,
    RegistrationFailed,
    ScenarioActionExecuted,
    SipMessage,
)

# A call's setup timings, as the host measures them (ms; None where it could not).
SETUP_TIMES = ("time_to_trying_ms", "time_to_ringing_ms", "post_dial_delay_ms", "call_setup_ms")


def _ts(msg: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(float(msg["t"]), UTC)


def to_events(run_id: str, msg: dict[str, Any]) -> list[Event]:
    """Platform events for one host message about one endpoint of `run_id`."""
    ev, ep = msg["ev"], msg.get("endpoint_id")
    base = {"run_id": run_id, "endpoint_id": ep, "occurred_at": _ts(msg)}
    if ev == "endpoint_ready" or (ev == "registered" and not msg.get("refresh")):
        # Ready in direct mode and registered with a registrar are the same fact;
        # refreshes are visible in the SIP trace, the fact "registered" is one.
        return [
            EndpointRegistered(
                **base,
                contact_uri=msg["contact_uri"],
                time_to_register_ms=msg.get("time_to_register_ms"),
                expires_s=msg.get("expires_s"),
            ),
            EndpointPhaseChanged(**base, phase=Phase.REGISTERED),
        ]
    if ev == "registered":
        return []
    if ev == "registration_failed":
        return [
            RegistrationFailed(**base, sip_code=msg.get("code"), reason=msg.get("reason") or "")
        ]
    if ev == "scenario_action":
        return [
            ScenarioActionExecuted(
                **base, action=msg["action"], ok=msg["ok"], detail=msg.get("detail") or ""
            )
        ]
    if ev == "dtmf_received":
        return [DtmfReceived(**base, digits=msg["digits"], method=msg["method"])]
    if ev == "phase":
        return [EndpointPhaseChanged(**base, phase=msg["phase"])]
    if ev == "call_attempted":
        return [CallAttempted(**base, target_uri=msg["target_uri"])]
    if ev == "call_progress":
        return [
            CallProgress(
                **base,
                sip_code=msg["code"],
                reason=msg.get("reason") or "",
                ms_since_invite=msg.get("ms_since_invite"),
            )
        ]
    if ev == "call_established":
        return [CallEstablished(**base, **{k: msg.get(k) for k in ("codec", *SETUP_TIMES)})]
    if ev == "call_failed":
        return [CallFailed(**base, sip_code=msg.get("code"), reason=msg.get("reason") or "")]
    if ev == "call_ended":
        return [
            CallEnded(
                **base,
                sip_code=msg.get("code"),
                reason=msg.get("reason") or "",
                duration_s=msg.get("duration_s"),
            )
        ]
    if ev == "call_record":
        quality = msg.get("quality") or {}
        answered = msg.get("answered_t")
        return [
            CallRecorded(
                **base,
                seq=msg["seq"],
                attempted_at=datetime.fromtimestamp(float(msg["attempted_t"]), UTC),
                outcome=msg["outcome"],
                sip_code=msg.get("code"),
                reason=msg.get("reason") or "",
                codec=msg.get("codec"),
                answered_at=datetime.fromtimestamp(float(answered), UTC) if answered else None,
                duration_s=msg.get("duration_s"),
                **{k: msg.get(k) for k in SETUP_TIMES},
                **{
                    f"{direction}_{name}": (quality.get(direction) or {}).get(name)
                    for direction in ("send", "recv")
                    for name in ("mos", "loss_pct", "jitter_ms")
                },
            )
        ]
    if ev == "endpoint_finished":
        return [
            EndpointFinished(
                **base,
                outcome=msg["outcome"],
                reason=msg.get("reason") or "",
                sip_code=msg.get("sip_code"),
            )
        ]
    if ev == "sip_message" and ep:
        return [SipMessage(**base, direction=msg["direction"], ts=_ts(msg), text=msg["text"])]
    return []
