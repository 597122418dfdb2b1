"""The per-second metric catalogue (METRICS.md), one definition per key.

A MetricSample carries one direction ("send" or "recv") of one endpoint for
one second. Every key below may appear in either direction's sample; a key
that PJSIP cannot measure for that direction is null, never a guess. Keys
are generic per direction: `packets` in a "send" sample is what METRICS.md
calls packets_sent, in a "recv" sample packets_received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import Direction

Kind = Literal["float", "int", "text"]


@dataclass(frozen=True)
class MetricDef:
    key: str
    unit: str
    category: str
    kind: Kind
    source: str


def _m(key: str, unit: str, category: str, source: str, kind: Kind = "float") -> MetricDef:
    return MetricDef(key, unit, category, kind, source)


NULL_IN_PJSIP = "not exposed by pjsua2 2.15.1: always null"

CATALOGUE: tuple[MetricDef, ...] = (
    # quality
    _m("mos", "1-5", "quality", "E-model (ITU-T G.107) from loss, delay and codec Ie/Bpl"),
    _m("r_factor", "0-100", "quality", "E-model R = 93.2 - Id - Ie_eff"),
    _m("ie_eff", "", "quality", "E-model effective equipment impairment"),
    _m("delay_impairment_id", "", "quality", "E-model delay impairment Id"),
    _m(
        "one_way_delay_ms",
        "ms",
        "quality",
        "recv: RTT/2 (0 before the first RTCP RR) + jitter-buffer delay + packetisation;"
        " send: RTT/2 + packetisation (the peer's jitter-buffer delay is unknown)",
    ),
    _m(
        "jitter_ms",
        "ms",
        "quality",
        "RFC 3550 interarrival jitter, last value (recv: local, from when PJSIP reads"
        " each packet; send: the peer's RTCP RR) + half an RTP clock sample: PJSIP"
        " truncates J to whole samples",
    ),
    _m("jitter_mean_ms", "ms", "quality", "RtcpStreamStat.jitterUsec.mean + half a sample"),
    _m("jitter_min_ms", "ms", "quality", "RtcpStreamStat.jitterUsec.min + half a sample"),
    _m("jitter_max_ms", "ms", "quality", "RtcpStreamStat.jitterUsec.max + half a sample"),
    _m("rtt_ms", "ms", "quality", "RTCP round-trip time, last value"),
    _m("rtt_mean_ms", "ms", "quality", "RtcpStat.rttUsec.mean"),
    _m("rtt_min_ms", "ms", "quality", "RtcpStat.rttUsec.min"),
    _m("rtt_max_ms", "ms", "quality", "RtcpStat.rttUsec.max"),
    _m(
        "packets_lost",
        "packets",
        "quality",
        "lost in this second (delta of RtcpStreamStat.loss)",
        "int",
    ),
    _m("packets_lost_total", "packets", "quality", "RtcpStreamStat.loss", "int"),
    _m(
        "fraction_lost",
        "0-1",
        "quality",
        "recv: lost / expected in this second;"
        " send: loss the peer reported in RTCP RRs over the last RR interval",
    ),
    _m("loss_percent", "%", "quality", "100 * fraction_lost"),
    _m("loss_period_mean_ms", "ms", "quality", "RtcpStreamStat.lossPeriodUsec.mean"),
    _m("loss_period_max_ms", "ms", "quality", "RtcpStreamStat.lossPeriodUsec.max"),
    _m("burst_density", "0-1", "quality", NULL_IN_PJSIP + " (RTCP XR not built)"),
    _m("gap_density", "0-1", "quality", NULL_IN_PJSIP + " (RTCP XR not built)"),
    _m("burst_duration_ms", "ms", "quality", NULL_IN_PJSIP + " (RTCP XR not built)"),
    _m("gap_duration_ms", "ms", "quality", NULL_IN_PJSIP + " (RTCP XR not built)"),
    _m("timestamp_jumps", "count", "quality", NULL_IN_PJSIP, "int"),
    _m("ssrc_switches", "count", "quality", NULL_IN_PJSIP, "int"),
    _m("srtp_decrypt_failures", "count", "quality", NULL_IN_PJSIP, "int"),
    _m(
        "ipdv_mean_ms",
        "ms",
        "quality",
        "RtcpStat.rxIpdvUsec.mean (recv only;"
        " null: PJMEDIA_RTCP_STAT_HAS_IPDV is off in this wheel)",
    ),
    _m(
        "ipdv_max_ms",
        "ms",
        "quality",
        "RtcpStat.rxIpdvUsec.max (recv only;"
        " null: PJMEDIA_RTCP_STAT_HAS_IPDV is off in this wheel)",
    ),
    _m(
        "raw_jitter_mean_ms",
        "ms",
        "quality",
        "RtcpStat.rxRawJitterUsec.mean (recv only;"
        " null: PJMEDIA_RTCP_STAT_HAS_RAW_JITTER is off in this wheel)",
    ),
    _m(
        "raw_jitter_max_ms",
        "ms",
        "quality",
        "RtcpStat.rxRawJitterUsec.max (recv only;"
        " null: PJMEDIA_RTCP_STAT_HAS_RAW_JITTER is off in this wheel)",
    ),
    # network
    _m(
        "packets",
        "packets",
        "network",
        "RTP packets in this second (recv: received; send: put on the wire, i.e. PJSIP's"
        " count less simulated_drops)",
        "int",
    ),
    _m(
        "packets_total",
        "packets",
        "network",
        "RtcpStreamStat.pkt (send: less simulated_drops_total)",
        "int",
    ),
    _m(
        "simulated_drops",
        "packets",
        "network",
        "send: RTP packets PJSIP's loss simulation (drop_tx_pct) discarded instead of"
        " sending in this second, counted from its log; recv: null",
        "int",
    ),
    _m("simulated_drops_total", "packets", "network", "send: simulated_drops so far", "int"),
    _m("bytes", "bytes", "network", "RTP payload bytes in this second", "int"),
    _m("bytes_total", "bytes", "network", "RtcpStreamStat.bytes", "int"),
    _m("packet_rate_ps", "packets/s", "network", "packets / elapsed seconds"),
    _m("bitrate_bps", "bit/s", "network", "8 * bytes / elapsed seconds"),
    _m("avg_packet_size_bytes", "bytes", "network", "bytes / packets in this second"),
    _m("expected_packets", "packets", "network", "packets + packets_lost in this second", "int"),
    _m("duplicate_packets", "packets", "network", "delta of RtcpStreamStat.dup", "int"),
    _m("duplicate_packets_total", "packets", "network", "RtcpStreamStat.dup", "int"),
    _m("out_of_order_packets", "packets", "network", "delta of RtcpStreamStat.reorder", "int"),
    _m("out_of_order_packets_total", "packets", "network", "RtcpStreamStat.reorder", "int"),
    _m("sequence_gaps", "count", "network", "loss periods begun in this second", "int"),
    _m("discarded_packets", "packets", "network", "delta of RtcpStreamStat.discard", "int"),
    _m("discarded_packets_total", "packets", "network", "RtcpStreamStat.discard", "int"),
    # RTCP feedback
    _m("rtcp_sr_sent", "count", "rtcp", NULL_IN_PJSIP, "int"),
    _m("rtcp_rr_received", "count", "rtcp", NULL_IN_PJSIP, "int"),
    _m("rtcp_reports", "count", "rtcp", "delta of RtcpStreamStat.updateCount", "int"),
    _m("rtcp_update_count_total", "count", "rtcp", "RtcpStreamStat.updateCount", "int"),
    _m("rtcp_last_update_age_ms", "ms", "rtcp", "now - RtcpStreamStat.update"),
    _m("remote_fraction_lost", "0-1", "rtcp", "loss reported by the peer's RTCP RR (send only)"),
    _m("remote_jitter_ms", "ms", "rtcp", "jitter reported by the peer's RTCP RR (send only)"),
    _m("rtcp_interval_ms", "ms", "rtcp", NULL_IN_PJSIP),
    # jitter buffer (recv only)
    _m("jb_avg_delay_ms", "ms", "jitter_buffer", "JbufState.avgDelayMsec"),
    _m("jb_min_delay_ms", "ms", "jitter_buffer", "JbufState.minDelayMsec"),
    _m("jb_max_delay_ms", "ms", "jitter_buffer", "JbufState.maxDelayMsec"),
    _m("jb_dev_delay_ms", "ms", "jitter_buffer", "JbufState.devDelayMsec"),
    _m("jb_frame_size", "bytes", "jitter_buffer", "JbufState.frameSize", "int"),
    _m("jb_prefetch", "frames", "jitter_buffer", "JbufState.prefetch", "int"),
    _m("jb_min_prefetch", "frames", "jitter_buffer", "JbufState.minPrefetch", "int"),
    _m("jb_max_prefetch", "frames", "jitter_buffer", "JbufState.maxPrefetch", "int"),
    _m("jb_size", "frames", "jitter_buffer", "JbufState.size", "int"),
    _m("jb_empty", "count", "jitter_buffer", "delta of JbufState.empty", "int"),
    _m("jb_lost", "count", "jitter_buffer", "delta of JbufState.lost", "int"),
    _m("jb_discard", "count", "jitter_buffer", "delta of JbufState.discard", "int"),
    _m("jb_burst", "frames", "jitter_buffer", "JbufState.burst", "int"),
    _m("jb_avg_burst", "frames", "jitter_buffer", "JbufState.avgBurst", "int"),
    # audio
    _m("codec", "", "audio", "StreamInfo.codecName", "text"),
    _m("payload_type", "", "audio", "StreamInfo.txPt / rxPt", "int"),
    _m("clock_rate", "Hz", "audio", "StreamInfo.codecClockRate", "int"),
    _m("ptime_ms", "ms", "audio", "StreamInfo.codecParam.setting.frmPerPkt * info.frameLen", "int"),
    _m("channel_count", "", "audio", "StreamInfo.codecParam.info.channelCnt", "int"),
    _m("codec_bitrate_bps", "bit/s", "audio", "StreamInfo.codecParam.info.avgBps", "int"),
    _m("audio_level", "0-255", "audio", "AudioMedia.getTxLevel (send) / getRxLevel (recv)", "int"),
    _m("plc_frames", "frames", "audio", NULL_IN_PJSIP, "int"),
    # call timing
    _m("time_to_register_ms", "ms", "timing", "REGISTER sent to 200 OK"),
    _m("registration_expires_s", "s", "timing", "Expires granted by the registrar", "int"),
    _m("time_to_trying_ms", "ms", "timing", "INVITE to 100 Trying (caller)"),
    _m("time_to_ringing_ms", "ms", "timing", "INVITE to 180 Ringing (caller)"),
    _m("post_dial_delay_ms", "ms", "timing", "INVITE to first 180/183 (caller)"),
    _m("call_setup_ms", "ms", "timing", "INVITE to 200 OK (caller) / INVITE to answer (callee)"),
    _m("first_rtp_ms", "ms", "timing", "call confirmed to first RTP packet received"),
    _m("call_duration_s", "s", "timing", "seconds since the call was confirmed"),
    _m("sample_interval_ms", "ms", "timing", "time covered by this sample"),
)

KEYS: tuple[str, ...] = tuple(m.key for m in CATALOGUE)
BY_KEY: dict[str, MetricDef] = {m.key: m for m in CATALOGUE}
DIRECTIONS: tuple[Direction, ...] = tuple(Direction)
