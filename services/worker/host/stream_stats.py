"""Turn two snapshots of PJSIP stream statistics into the per-second samples.

Pure: the host reads pjsua2 objects into a plain snapshot dict (see
`empty_snapshot` for the shape; every counter is cumulative since the
stream started, durations in microseconds as PJSIP gives them) and this
module does the arithmetic. Each sample carries every catalogue key; a key
PJSIP cannot measure for that direction is None.
"""

from __future__ import annotations

import time
from typing import Any

from callmeter_vocabulary.metrics import KEYS

from . import emodel

Snapshot = dict[str, Any]
Metrics = dict[str, Any]  # one direction's values by catalogue key (a Sample's metrics)
MATH_KEYS = ("last", "mean", "min", "max", "n")
JB_KEYS = (
    "avg_delay_ms",
    "min_delay_ms",
    "max_delay_ms",
    "dev_delay_ms",
    "frame_size",
    "prefetch",
    "min_prefetch",
    "max_prefetch",
    "size",
    "empty",
    "lost",
    "discard",
    "burst",
    "avg_burst",
)
JB_DELTA = ("empty", "lost", "discard")  # cumulative JbufState counters, reported per second
TIMING_KEYS = (
    "time_to_register_ms",
    "registration_expires_s",
    "time_to_trying_ms",
    "time_to_ringing_ms",
    "post_dial_delay_ms",
    "call_setup_ms",
    "first_rtp_ms",
    "call_duration_s",
)


def _math(n: int = 0) -> dict[str, float]:
    return {"last": 0.0, "mean": 0.0, "min": 0.0, "max": 0.0, "n": n}


def _stream() -> dict[str, Any]:
    return {
        "pkt": 0,
        "bytes": 0,
        "loss": 0,
        "dup": 0,
        "reorder": 0,
        "discard": 0,
        "update_count": 0,
        "update_unix": None,
        "jitter": _math(),
        "loss_period": _math(),
        "dropped": 0,  # tx: packets PJSIP's loss simulation dropped (counted in pkt)
    }


def empty_snapshot() -> Snapshot:
    """The snapshot shape, all zero; the host fills it from pjsua2."""
    return {
        "mono": 0.0,  # time.monotonic() when read
        "wall": 0.0,  # time.time() when read
        "rx": _stream(),  # RtcpStat.rxStat
        "tx": _stream(),  # RtcpStat.txStat (loss/jitter there come from the peer's RR)
        "rtt": _math(),  # RtcpStat.rttUsec
        "ipdv": _math(),  # RtcpStat.rxIpdvUsec
        "raw_jitter": _math(),  # RtcpStat.rxRawJitterUsec
        "jb": None,  # dict with JB_KEYS, or None when no jitter buffer state
        "info": {
            "codec": None,
            "clock_rate": None,
            "tx_pt": None,
            "rx_pt": None,
            "ptime_ms": None,
            "channel_count": None,
            "codec_bitrate_bps": None,
        },
        "level": {"tx": None, "rx": None},
        "timing": dict.fromkeys(TIMING_KEYS),
    }


def _ms(stat: dict[str, float], key: str) -> float | None:
    """A MathStat field in ms; None while PJSIP has no value (n == 0)."""
    return stat[key] / 1000.0 if stat.get("n") else None


def _delta(cur: int, prev: int) -> int:
    # PJSIP may lower cumulative loss when a late packet arrives; never report negative
    return max(0, int(cur) - int(prev))


def jitter_floor_offset_ms(clock_rate: int | None) -> float:
    """What PJSIP's jitter values lack on average: half a sample of the RTP clock.

    PJSIP keeps J (RFC 3550 A.8) scaled by 16 in whole RTP timestamp units and reports
    `J >> 4`, i.e. J rounded down to a whole sample (125 us at 8 kHz), so every value
    it gives is on average half a sample below J (measured against tshark on the same
    packets: 11-18 % low at 0.3-0.7 ms). An RTCP RR carries the same truncated J.
    Adding half a sample makes the values unbiased; unknown clock: no correction.
    """
    return 500.0 / clock_rate if clock_rate else 0.0


def _jitter_ms(stat: dict[str, float], key: str, offset_ms: float) -> float | None:
    value = _ms(stat, key)
    return value + offset_ms if value is not None else None


def _direction(
    cur: dict[str, Any],
    prev: dict[str, Any],
    elapsed: float | None,
    wall: float,
    jitter_offset_ms: float = 0.0,
) -> Metrics:
    """Counters shared by both directions (packets, bytes, loss, RTCP bookkeeping)."""
    jit, off = cur["jitter"], jitter_offset_ms
    pkts = _delta(cur["pkt"], prev["pkt"])
    nbytes = _delta(cur["bytes"], prev["bytes"])
    lost = _delta(cur["loss"], prev["loss"])
    upd = cur.get("update_unix")
    return {
        "packets": pkts,
        "packets_total": cur["pkt"],
        "bytes": nbytes,
        "bytes_total": cur["bytes"],
        "packet_rate_ps": pkts / elapsed if elapsed else None,
        "bitrate_bps": 8 * nbytes / elapsed if elapsed else None,
        "avg_packet_size_bytes": nbytes / pkts if pkts else None,
        "packets_lost": lost,
        "packets_lost_total": cur["loss"],
        "expected_packets": pkts + lost,
        "duplicate_packets": _delta(cur["dup"], prev["dup"]),
        "duplicate_packets_total": cur["dup"],
        "out_of_order_packets": _delta(cur["reorder"], prev["reorder"]),
        "out_of_order_packets_total": cur["reorder"],
        "discarded_packets": _delta(cur["discard"], prev["discard"]),
        "discarded_packets_total": cur["discard"],
        "sequence_gaps": _delta(cur["loss_period"]["n"], prev["loss_period"]["n"]),
        "loss_period_mean_ms": _ms(cur["loss_period"], "mean"),
        "loss_period_max_ms": _ms(cur["loss_period"], "max"),
        "jitter_ms": _jitter_ms(jit, "last", off),
        "jitter_mean_ms": _jitter_ms(jit, "mean", off),
        "jitter_min_ms": _jitter_ms(jit, "min", off),
        "jitter_max_ms": _jitter_ms(jit, "max", off),
        "rtcp_reports": _delta(cur["update_count"], prev["update_count"]),
        "rtcp_update_count_total": cur["update_count"],
        "rtcp_last_update_age_ms": (wall - upd) * 1000.0 if upd else None,
    }


def _on_wire(tx: dict[str, Any]) -> dict[str, Any]:
    dropped = int(tx.get("dropped") or 0)
    return {**tx, "dropped": dropped, "pkt": max(0, tx["pkt"] - dropped)}


def _quality(codec: str | None, loss_pct: float | None, delay_ms: float) -> Metrics:
    if loss_pct is None:
        return dict.fromkeys(("mos", "r_factor", "ie_eff", "delay_impairment_id"))
    res = emodel.evaluate(codec, loss_pct, delay_ms)
    return {"mos": res.mos, "r_factor": res.r, "ie_eff": res.ie_eff, "delay_impairment_id": res.id}


def compute_samples(
    prev: Snapshot | None, cur: Snapshot, rr_window: tuple[int, int] | None = None
) -> tuple[Metrics, Metrics]:
    """(send, recv) samples for the interval prev -> cur.

    prev None means "since the stream started" (counters start at zero).
    rr_window is (packets lost, packets sent) over the last interval between
    two RTCP receiver reports from the peer, or None before the second RR; see
    StreamSampler.
    """
    base = prev if prev is not None else empty_snapshot()
    timing = cur["timing"]
    if prev is not None:
        elapsed: float | None = cur["mono"] - prev["mono"]
    else:
        elapsed = timing.get("call_duration_s")
    elapsed = elapsed if elapsed and elapsed > 0 else None
    info, rtt = cur["info"], cur["rtt"]
    rtt_ms = _ms(rtt, "last")
    ptime = info.get("ptime_ms") or 0
    common: Metrics = dict.fromkeys(KEYS)  # every key; unmeasurable ones stay None
    common.update({k: timing.get(k) for k in TIMING_KEYS})
    common.update(
        {
            "rtt_ms": rtt_ms,
            "rtt_mean_ms": _ms(rtt, "mean"),
            "rtt_min_ms": _ms(rtt, "min"),
            "rtt_max_ms": _ms(rtt, "max"),
            "codec": info.get("codec"),
            "clock_rate": info.get("clock_rate"),
            "ptime_ms": info.get("ptime_ms"),
            "channel_count": info.get("channel_count"),
            "codec_bitrate_bps": info.get("codec_bitrate_bps"),
            "sample_interval_ms": elapsed * 1000.0 if elapsed else None,
        }
    )
    send, recv = dict(common), dict(common)

    # --- recv: everything measured locally on the incoming RTP stream
    offset = jitter_floor_offset_ms(info.get("clock_rate"))
    recv.update(_direction(cur["rx"], base["rx"], elapsed, cur["wall"], offset))
    recv["payload_type"] = info.get("rx_pt")
    recv["audio_level"] = cur["level"].get("rx")
    expected = recv["expected_packets"]
    recv["fraction_lost"] = recv["packets_lost"] / expected if expected else None
    recv["loss_percent"] = 100.0 * recv["fraction_lost"] if expected else None
    recv["ipdv_mean_ms"] = _ms(cur["ipdv"], "mean")
    recv["ipdv_max_ms"] = _ms(cur["ipdv"], "max")
    recv["raw_jitter_mean_ms"] = _ms(cur["raw_jitter"], "mean")
    recv["raw_jitter_max_ms"] = _ms(cur["raw_jitter"], "max")
    jb, pjb = cur.get("jb"), base.get("jb") or {}
    jb_delay = 0.0
    if jb:
        for key in JB_KEYS:
            value = jb.get(key)
            if key in JB_DELTA and value is not None:
                value = _delta(value, pjb.get(key) or 0)
            recv["jb_" + key] = value
        jb_delay = float(jb.get("avg_delay_ms") or 0.0)
    # One-way delay: RTT/2 (0 until the first RTCP RR gives an RTT: a lower bound
    # then) + jitter-buffer delay + packetisation.
    recv["one_way_delay_ms"] = (rtt_ms or 0.0) / 2 + jb_delay + ptime
    recv.update(_quality(info.get("codec"), recv["loss_percent"], recv["one_way_delay_ms"]))

    # --- send: our own counters, plus what the peer told us in RTCP RRs
    # pjmedia counts a packet as sent before its loss simulation drops it: "sent" is
    # what reached the wire, the simulated drops are counted apart
    tx, btx = _on_wire(cur["tx"]), _on_wire(base["tx"])
    send.update(_direction(tx, btx, elapsed, cur["wall"], offset))
    send["simulated_drops"] = _delta(tx["dropped"], btx["dropped"])
    send["simulated_drops_total"] = tx["dropped"]
    send["payload_type"] = info.get("tx_pt")
    send["audio_level"] = cur["level"].get("tx")
    # Loss on the send side is only known per RR interval (~5 s), so the per-second
    # fraction uses the last RR window rather than a spiky per-second delta.
    remote_fraction = None
    if rr_window is not None and rr_window[1] > 0:
        remote_fraction = min(1.0, max(0.0, rr_window[0] / rr_window[1]))
    send["fraction_lost"] = send["remote_fraction_lost"] = remote_fraction
    send["loss_percent"] = 100.0 * remote_fraction if remote_fraction is not None else None
    send["remote_jitter_ms"] = send["jitter_ms"]
    if cur["tx"]["update_count"] and rtt_ms is not None:
        # Peer's jitter-buffer delay is unknown: RTT/2 + packetisation is a lower bound.
        send["one_way_delay_ms"] = rtt_ms / 2 + ptime
        send.update(_quality(info.get("codec"), send["loss_percent"], send["one_way_delay_ms"]))
    return send, recv


class StreamSampler:
    """Per-call state between samples: previous snapshot and the RR loss window."""

    def __init__(self) -> None:
        self.prev: Snapshot | None = None
        # (update_count, loss, pkt) when the last peer RR was first seen
        self._rr_ref: tuple[int, int, int] = (0, 0, 0)
        self._rr_window: tuple[int, int] | None = None
        # simulated drops are counted per media transport, which outlives a stream
        self._drops_before_stream = 0

    def sample(self, cur: Snapshot) -> tuple[Metrics, Metrics]:
        tx, prev = cur["tx"], self.prev
        if prev is not None and (
            cur["rx"]["pkt"] < prev["rx"]["pkt"] or tx["pkt"] < prev["tx"]["pkt"]
        ):
            # A re-INVITE (hold, codec change) recreated the stream and its counters
            # restarted at zero: measure this interval from zero, keep the clock.
            self._drops_before_stream += prev["tx"].get("dropped", 0)
            prev = {**empty_snapshot(), "mono": prev["mono"], "wall": prev["wall"]}
            self._rr_ref, self._rr_window = (0, 0, 0), None
        if self._drops_before_stream:
            tx = {**tx, "dropped": tx.get("dropped", 0) - self._drops_before_stream}
            cur = {**cur, "tx": tx}
        count, ref_loss, ref_pkt = self._rr_ref
        if tx["update_count"] != count:
            # tx.pkt counts packets sent until now; the RR covers packets until the
            # peer sent it, at most one poll earlier: fine over a ~5 s RR interval.
            self._rr_window = (max(0, tx["loss"] - ref_loss), max(0, tx["pkt"] - ref_pkt))
            self._rr_ref = (tx["update_count"], tx["loss"], tx["pkt"])
        result = compute_samples(prev, cur, self._rr_window)
        self.prev = cur
        return result


# ---------------------------------------------------------------- pjsua2 objects -> snapshot
def _pj_math(m: Any) -> dict[str, float]:
    return {"last": m.last, "mean": m.mean, "min": m.min, "max": m.max, "n": m.n}


def _pj_stream(s: Any) -> dict[str, Any]:
    upd = s.update
    return {
        "pkt": s.pkt,
        "bytes": s.bytes,
        "loss": s.loss,
        "dup": s.dup,
        "reorder": s.reorder,
        "discard": s.discard,
        "update_count": s.updateCount,
        "update_unix": upd.sec + upd.msec / 1000.0 if upd.sec else None,
        "jitter": _pj_math(s.jitterUsec),
        "loss_period": _pj_math(s.lossPeriodUsec),
    }


_JB_ATTRS = {
    "avg_delay_ms": "avgDelayMsec",
    "min_delay_ms": "minDelayMsec",
    "max_delay_ms": "maxDelayMsec",
    "dev_delay_ms": "devDelayMsec",
    "frame_size": "frameSize",
    "prefetch": "prefetch",
    "min_prefetch": "minPrefetch",
    "max_prefetch": "maxPrefetch",
    "size": "size",
    "empty": "empty",
    "lost": "lost",
    "discard": "discard",
    "burst": "burst",
    "avg_burst": "avgBurst",
}


def read_snapshot(
    call: Any, timing: dict[str, Any], levels: bool = True, errors: tuple[type, ...] = (Exception,)
) -> Snapshot:
    """Read stream 0 of a pjsua2 Call into a snapshot (duck-typed: no pjsua2 import here).

    `errors` is what the getters raise (the host passes pjsua2.Error).
    Each part is read separately: a stream being torn down can fail one getter
    and not another, and a partial snapshot (zeros/None) beats no sample.
    """
    snap = empty_snapshot()
    snap["mono"], snap["wall"] = time.monotonic(), time.time()
    snap["timing"] = timing
    try:
        st = call.getStreamStat(0)
        rtcp = st.rtcp
        snap["rx"], snap["tx"] = _pj_stream(rtcp.rxStat), _pj_stream(rtcp.txStat)
        snap["rtt"] = _pj_math(rtcp.rttUsec)
        snap["ipdv"] = _pj_math(getattr(rtcp, "rxIpdvUsec", None) or _ZERO)
        snap["raw_jitter"] = _pj_math(getattr(rtcp, "rxRawJitterUsec", None) or _ZERO)
        snap["jb"] = {k: getattr(st.jbuf, a, None) for k, a in _JB_ATTRS.items()}
    except errors:
        pass
    try:
        si = call.getStreamInfo(0)
        prm = si.audCodecParam
        snap["info"] = {
            "codec": si.codecName,
            "clock_rate": si.codecClockRate,
            "tx_pt": si.txPt,
            "rx_pt": si.rxPt,
            "ptime_ms": prm.setting.frmPerPkt * prm.info.frameLen,
            "channel_count": prm.info.channelCnt,
            "codec_bitrate_bps": prm.info.avgBps,
        }
    except errors:
        pass
    try:
        if not levels:
            return snap
        am = call.getAudioMedia(-1)
        snap["level"] = {"tx": am.getTxLevel(), "rx": am.getRxLevel()}
    except errors:
        pass
    return snap


class _Zero:
    last = mean = min = max = n = 0


_ZERO = _Zero()
