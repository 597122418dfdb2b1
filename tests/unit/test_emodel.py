"""E-model against published points (G.107 / G.113 App. I) and its monotonicity."""

import pytest

from callmeter_worker.host import emodel


def test_g711_clean_line_is_toll_quality():
    res = emodel.evaluate("PCMU", 0.0, 0.0)
    assert res.r == pytest.approx(93.2)
    assert res.mos == pytest.approx(4.41, abs=0.01)
    assert res.id == 0.0 and res.ie_eff == 0.0


def test_g711_five_percent_random_loss():
    res = emodel.evaluate("PCMA/8000/1", 5.0, 0.0)
    assert res.ie_eff == pytest.approx(95 * 5 / (5 + 25.1), abs=0.01)  # 15.78
    assert res.r == pytest.approx(77.42, abs=0.01)
    assert res.mos == pytest.approx(3.92, abs=0.01)


def test_delay_impairment_knee_at_177_3_ms():
    assert emodel.delay_impairment(100) == pytest.approx(2.4)
    assert emodel.delay_impairment(177.3) == pytest.approx(0.024 * 177.3)
    assert emodel.delay_impairment(300) == pytest.approx(0.024 * 300 + 0.11 * (300 - 177.3))
    assert emodel.delay_impairment(-5) == 0.0


def test_mos_mapping_clamps():
    assert emodel.mos_from_r(-10) == 1.0
    assert emodel.mos_from_r(0) == pytest.approx(1.0)
    assert emodel.mos_from_r(101) == 4.5
    assert emodel.mos_from_r(100) == pytest.approx(4.5)
    assert emodel.mos_from_r(50) == pytest.approx(1 + 1.75 + 7e-6 * 50 * -10 * 50)


@pytest.mark.parametrize("codec", ["PCMU", "G722", "GSM", "iLBC", "speex"])
def test_mos_falls_monotonically_with_loss_and_delay(codec):
    by_loss = [emodel.evaluate(codec, loss, 20).mos for loss in (0, 1, 2, 5, 10, 20, 40)]
    by_delay = [emodel.evaluate(codec, 0, d).mos for d in (0, 50, 150, 200, 300, 500)]
    assert all(a > b for a, b in zip(by_loss, by_loss[1:], strict=False))
    assert all(a > b for a, b in zip(by_delay, by_delay[1:], strict=False))


def test_burst_loss_hurts_more_than_random():
    assert emodel.r_factor("PCMU", 5, 0, burst_r=2.0) < emodel.r_factor("PCMU", 5, 0)


def test_codec_rows_and_unknown_codec_fallback():
    assert emodel.effective_ie("GSM", 0) == 20.0
    assert emodel.codec_impairment("nonsense") == emodel.CODEC_TABLE["PCMU"]
    assert emodel.codec_impairment(None) == emodel.CODEC_TABLE["PCMU"]
    assert emodel.r_factor("PCMU", 100, 1000) < 0
    assert emodel.mos_from_r(emodel.r_factor("PCMU", 100, 1000)) == 1.0


def test_codec_names_resolve_to_pjsip_ids():
    from callmeter_worker.host.audio import resolve_codecs

    avail = ["speex/16000/1", "speex/8000/1", "PCMU/8000/1", "G722/16000/1", "iLBC/8000/1"]
    assert resolve_codecs(["speex", "pcmu", "G722/16000/1", "PCMU"], avail) == [
        "speex/8000/1",
        "PCMU/8000/1",
        "G722/16000/1",
    ]
    with pytest.raises(ValueError):
        resolve_codecs(["opus"], avail)
