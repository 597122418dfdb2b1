"""stream_stats: snapshot pairs -> per-direction samples with every catalogue key."""

import copy
from types import SimpleNamespace

import pytest

from callmeter_vocabulary.metrics import KEYS
from callmeter_worker.host import emodel
from callmeter_worker.host.stream_stats import (
    StreamSampler,
    compute_samples,
    empty_snapshot,
    jitter_floor_offset_ms,
    read_snapshot,
)


def _math(last, n=1):
    return {"last": last, "mean": last, "min": last, "max": last, "n": n}


def snap(second, rx_pkt, rx_loss=0, tx_pkt=None, tx_loss=0, rr=0, rtt_us=None):
    s = empty_snapshot()
    s["mono"], s["wall"] = 100.0 + second, 1000.0 + second
    s["rx"].update(pkt=rx_pkt, bytes=160 * rx_pkt, loss=rx_loss, jitter=_math(2000))
    s["tx"].update(
        pkt=tx_pkt if tx_pkt is not None else rx_pkt,
        bytes=160 * rx_pkt,
        loss=tx_loss,
        update_count=rr,
        update_unix=1000.0 + second - 0.5 if rr else None,
    )
    if rr:
        s["tx"]["jitter"] = _math(3000)
    if rtt_us is not None:
        s["rtt"] = _math(rtt_us)
    s["jb"] = {
        "avg_delay_ms": 40,
        "min_delay_ms": 20,
        "max_delay_ms": 60,
        "dev_delay_ms": 5,
        "frame_size": 160,
        "prefetch": 2,
        "min_prefetch": 0,
        "max_prefetch": 4,
        "size": 10,
        "empty": 3 * second,
        "lost": rx_loss,
        "discard": 0,
        "burst": 1,
        "avg_burst": 1,
    }
    s["info"] = {
        "codec": "PCMU",
        "clock_rate": 8000,
        "tx_pt": 0,
        "rx_pt": 0,
        "ptime_ms": 20,
        "channel_count": 1,
        "codec_bitrate_bps": 64000,
    }
    s["level"] = {"tx": 30, "rx": 25}
    s["timing"].update(call_setup_ms=12.0, first_rtp_ms=20.0, call_duration_s=float(second))
    return s


def test_every_key_in_both_directions_and_promised_nulls():
    send, recv = compute_samples(None, snap(1, 50))
    assert set(send) == set(KEYS) and set(recv) == set(KEYS)
    always_null = [
        "rtcp_sr_sent",
        "rtcp_rr_received",
        "rtcp_interval_ms",
        "burst_density",
        "gap_density",
        "plc_frames",
        "timestamp_jumps",
        "ssrc_switches",
        "srtp_decrypt_failures",
        "time_to_register_ms",
    ]
    for key in always_null:
        assert send[key] is None and recv[key] is None, key
    for key in KEYS:
        if key.startswith(("jb_", "ipdv_", "raw_jitter_")):
            assert send[key] is None, key
    # no RR from the peer yet: send-direction loss and MOS are unknown, not zero
    unknown = ("mos", "r_factor", "fraction_lost", "remote_fraction_lost", "jitter_ms", "rtt_ms")
    assert {k: send[k] for k in unknown} == dict.fromkeys(unknown)


def test_recv_second_with_loss():
    prev, cur = snap(1, 50), snap(2, 98, rx_loss=2, rtt_us=40000)
    _, recv = compute_samples(prev, cur)
    subset = {
        k: recv[k]
        for k in (
            "packets",
            "packets_total",
            "packets_lost",
            "packets_lost_total",
            "expected_packets",
            "fraction_lost",
            "loss_percent",
            "packet_rate_ps",
            "bitrate_bps",
            "avg_packet_size_bytes",
            "jitter_ms",
            "rtt_ms",
            "jb_avg_delay_ms",
            "jb_empty",
            "jb_lost",
            "one_way_delay_ms",
            "payload_type",
            "audio_level",
            "sample_interval_ms",
            "codec",
        )
    }
    assert subset == {
        "packets": 48,
        "packets_total": 98,
        "packets_lost": 2,
        "packets_lost_total": 2,
        "expected_packets": 50,
        "fraction_lost": 0.04,
        "loss_percent": 4.0,
        "packet_rate_ps": 48.0,
        "bitrate_bps": 8 * 48 * 160.0,
        "avg_packet_size_bytes": 160.0,
        "jitter_ms": 2.0625,  # 2 ms from PJSIP + half an 8 kHz sample
        "rtt_ms": 40.0,
        "jb_avg_delay_ms": 40,
        "jb_empty": 3,
        "jb_lost": 2,
        "one_way_delay_ms": 20.0 + 40 + 20,
        "payload_type": 0,
        "audio_level": 25,
        "sample_interval_ms": 1000.0,
        "codec": "PCMU",
    }
    expected = emodel.evaluate("PCMU", 4.0, 80.0)
    assert recv["mos"] == pytest.approx(expected.mos) and recv["r_factor"] == pytest.approx(
        expected.r
    )
    assert recv["ie_eff"] == pytest.approx(expected.ie_eff)


def test_clean_recv_second_mos_and_rtt_unknown_contributes_no_delay():
    _, recv = compute_samples(snap(1, 50), snap(2, 100))
    assert recv["fraction_lost"] == 0.0 and recv["rtt_ms"] is None
    assert recv["one_way_delay_ms"] == 60.0  # jb 40 + ptime 20, RTT unknown -> 0
    assert recv["mos"] > 4.3


def test_nothing_expected_gives_null_loss_and_mos():
    _, recv = compute_samples(snap(1, 50), snap(2, 50))
    assert recv["packets"] == 0 and recv["fraction_lost"] is None and recv["mos"] is None


def test_loss_delta_never_negative():
    # PJSIP lowers cumulative loss when a "lost" packet arrives late
    _, recv = compute_samples(snap(1, 50, rx_loss=3), snap(2, 101, rx_loss=1))
    assert recv["packets_lost"] == 0 and recv["packets_lost_total"] == 1


def test_send_direction_uses_rr_window():
    sampler = StreamSampler()
    sampler.sample(snap(1, 50))
    sampler.sample(snap(5, 250, tx_loss=0, rr=1, rtt_us=30000))  # first RR: no loss
    send, _ = sampler.sample(snap(10, 500, tx_loss=10, rr=2, rtt_us=30000))  # 10 lost of 250
    assert send["remote_fraction_lost"] == pytest.approx(0.04)
    assert send["fraction_lost"] == pytest.approx(0.04) and send["loss_percent"] == pytest.approx(4)
    assert send["remote_jitter_ms"] == send["jitter_ms"] == 3.0625  # + half a sample
    assert send["one_way_delay_ms"] == 15.0 + 20
    assert send["mos"] == pytest.approx(emodel.evaluate("PCMU", 4.0, 35.0).mos)
    assert send["rtcp_reports"] == 1 and send["rtcp_last_update_age_ms"] == pytest.approx(500)
    # the window holds until the next RR
    send2, _ = sampler.sample(snap(11, 550, tx_loss=10, rr=2, rtt_us=30000))
    assert send2["remote_fraction_lost"] == pytest.approx(0.04) and send2["rtcp_reports"] == 0


def test_first_sample_uses_call_duration_as_interval():
    send, recv = compute_samples(None, snap(2, 100))
    assert recv["sample_interval_ms"] == 2000.0 and recv["packet_rate_ps"] == 50.0
    assert send["packets"] == 100 and send["payload_type"] == 0 and send["audio_level"] == 30


def test_inputs_not_mutated():
    prev, cur = snap(1, 50), snap(2, 100)
    before = copy.deepcopy((prev, cur))
    compute_samples(prev, cur)
    assert (prev, cur) == before


def _fake_stream(pkt, loss, upd_sec=0):
    ms = SimpleNamespace(last=2000, mean=1500, min=0, max=3000, n=4)
    zero = SimpleNamespace(last=0, mean=0, min=0, max=0, n=0)
    return SimpleNamespace(
        pkt=pkt,
        bytes=160 * pkt,
        loss=loss,
        dup=0,
        reorder=1,
        discard=0,
        updateCount=2,
        update=SimpleNamespace(sec=upd_sec, msec=500),
        jitterUsec=ms,
        lossPeriodUsec=zero,
    )


class _FakeCall:
    """Duck-typed stand-in for pjsua2.Call; getAudioMedia fails like an ended stream."""

    def getStreamStat(self, idx):
        rtcp = SimpleNamespace(
            rxStat=_fake_stream(100, 2, 1000),
            txStat=_fake_stream(101, 0),
            rttUsec=SimpleNamespace(last=30000, mean=30000, min=30000, max=30000, n=1),
        )
        jbuf = SimpleNamespace(
            avgDelayMsec=40,
            minDelayMsec=20,
            maxDelayMsec=60,
            devDelayMsec=5,
            frameSize=80,
            prefetch=1,
            minPrefetch=0,
            maxPrefetch=4,
            size=3,
            empty=0,
            lost=2,
            discard=0,
            burst=1,
            avgBurst=1,
        )
        return SimpleNamespace(rtcp=rtcp, jbuf=jbuf)

    def getStreamInfo(self, idx):
        info = SimpleNamespace(frameLen=10, channelCnt=1, avgBps=64000)
        prm = SimpleNamespace(setting=SimpleNamespace(frmPerPkt=2), info=info)
        return SimpleNamespace(
            codecName="PCMA", codecClockRate=8000, txPt=8, rxPt=8, audCodecParam=prm
        )

    def getAudioMedia(self, idx):
        raise KeyError("no active audio media")


def test_read_snapshot_from_duck_typed_call_then_samples():
    snap = read_snapshot(_FakeCall(), {"call_duration_s": 2.0}, errors=(KeyError,))
    assert snap["rx"]["pkt"] == 100 and snap["rx"]["update_unix"] == 1000.5
    assert snap["tx"]["update_unix"] is None and snap["level"] == {"tx": None, "rx": None}
    assert snap["info"]["ptime_ms"] == 20 and snap["jb"]["avg_delay_ms"] == 40
    assert snap["ipdv"]["n"] == 0  # attribute missing -> zero stat -> null metric
    send, recv = compute_samples(None, snap)
    assert set(recv) == set(KEYS)
    assert recv["codec"] == "PCMA" and recv["rtt_ms"] == 30.0 and recv["ipdv_mean_ms"] is None
    assert recv["fraction_lost"] == pytest.approx(2 / 102) and recv["jitter_ms"] == 2.0625


def test_pjsips_whole_sample_jitter_gets_half_a_sample_back():
    # PJSIP reports floor(J) in RTP timestamp units: unbiased is + half a sample
    assert jitter_floor_offset_ms(8000) == 0.0625
    assert jitter_floor_offset_ms(16000) == 0.03125
    assert jitter_floor_offset_ms(None) == 0.0


def test_sent_is_what_reached_the_wire_and_simulated_drops_are_counted_apart():
    prev, cur = empty_snapshot(), empty_snapshot()
    prev["mono"], cur["mono"] = 10.0, 11.0
    prev["tx"].update(pkt=100, bytes=16_000, dropped=5)
    cur["tx"].update(pkt=150, bytes=24_000, dropped=8)  # pjmedia counts drops as sent
    send, recv = compute_samples(prev, cur)
    assert (send["packets"], send["packets_total"]) == (47, 142)
    assert (send["simulated_drops"], send["simulated_drops_total"]) == (3, 8)
    assert recv["simulated_drops"] is None and recv["simulated_drops_total"] is None


def test_simulated_drops_restart_with_a_stream_a_reinvite_recreated():
    sampler, t = StreamSampler(), 0.0

    def snap(pkt: int, dropped: int) -> dict:
        nonlocal t
        t += 1.0
        s = empty_snapshot()
        s["mono"] = t
        s["tx"].update(pkt=pkt, dropped=dropped)  # dropped: the transport's count so far
        return s

    sampler.sample(snap(100, 4))
    send, _ = sampler.sample(snap(150, 6))
    assert (send["packets_total"], send["simulated_drops_total"]) == (144, 6)
    send, _ = sampler.sample(snap(40, 8))  # re-INVITE: pkt restarts, the transport's does not
    assert (send["packets"], send["simulated_drops"]) == (38, 2)
    assert (send["packets_total"], send["simulated_drops_total"]) == (38, 2)
    send, _ = sampler.sample(snap(90, 9))
    assert (send["packets"], send["simulated_drops"], send["packets_total"]) == (49, 1, 87)
