"""WAV validation and the pure PESQ scoring path (alignment, resampling, mode)."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from callmeter_common import wav
from callmeter_worker.supervisor import speech


def _wav(rate=8000, seconds=2.0, channels=1, width=2, silent=False) -> bytes:
    n = int(rate * seconds)
    rng = np.random.default_rng(1)
    x = np.zeros(n * channels) if silent else rng.normal(0, 3000, n * channels)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        data = x.astype("<i2").tobytes() if width == 2 else (x / 256 + 128).astype("u1").tobytes()
        w.writeframes(data)
    return buf.getvalue()


def test_a_valid_wav_gives_its_reference_and_format():
    data = _wav(16000, 3.0)
    info = wav.validate(data)
    assert info.ref == wav.ref_of(data) and info.ref.startswith("sha256:")
    assert (info.clock_rate, info.frames, info.duration_s) == (16000, 48000, 3.0)


@pytest.mark.parametrize(
    "data, field",
    [
        (b"RIFF junk", "format"),
        (_wav(width=1), "format"),
        (_wav(channels=2), "channels"),
        (_wav(rate=44100), "rate"),
        (_wav(seconds=0.5), "duration"),
        (_wav(seconds=61), "duration"),
        (_wav(silent=True), "samples"),
    ],
)
def test_bad_wavs_name_the_field(data, field):
    with pytest.raises(wav.WavError, match=f"^{field}:"):
        wav.validate(data)


def test_oversize_upload_is_refused_before_parsing():
    with pytest.raises(wav.WavError, match="^size:"):
        wav.validate(b"\0" * (wav.MAX_BYTES + 1))


def test_the_shipped_reference_is_valid_wideband_speech():
    info = wav.validate(wav.BUILTIN["speech-en"].read_bytes())
    assert info.clock_rate == 16000 and 8 <= info.duration_s <= 12


def _reference() -> tuple[np.ndarray, int]:
    pcm, rate = wav.read_pcm(wav.BUILTIN["speech-en"])
    return np.frombuffer(pcm, "<i2"), rate


def test_a_recording_from_anywhere_in_the_loop_is_aligned_and_scores_near_the_ceiling():
    ref, rate = _reference()
    ref8 = np.frombuffer(speech.at_rate(ref.tobytes(), rate, 8000), "<i2")
    start = 23_456  # the call joined the sender's loop here, and ran past its end
    rec = np.tile(ref8, 2)[start : start + 8 * 8000]
    s = speech.score(ref8, 8000, rec, 8000, "PCMU/8000")
    assert s.offset_s == pytest.approx(start / 8000, abs=0.002)
    assert s.mode == "nb" and s.mos_lqo > 4.4  # identical audio: P.862.1's ceiling is 4.55


def test_damage_lowers_the_score_and_g722_is_scored_wideband():
    ref, rate = _reference()
    rec = ref[: 8 * rate].copy()
    rec[::50] = 0  # crude damage
    rng = np.random.default_rng(2)
    for i in rng.choice(len(rec) // 320, 40, replace=False):  # 40 lost 20 ms frames
        rec[i * 320 : (i + 1) * 320] = 0
    clean = speech.score(ref, rate, ref[: 8 * rate], rate, "G722/16000")
    damaged = speech.score(ref, rate, rec, rate, "G722/16000")
    assert clean.mode == damaged.mode == "wb" and clean.clock_rate == 16000
    assert clean.mos_lqo > 4.4 and damaged.mos_lqo < clean.mos_lqo - 1


def test_too_short_a_recording_is_an_error_naming_it():
    ref, rate = _reference()
    with pytest.raises(ValueError, match="^recording:"):
        speech.score(ref, rate, ref[:rate], rate, "PCMU/8000")


def test_resampling_keeps_a_tone_below_the_new_nyquist():
    t = np.arange(16000) / 16000
    x = 10000 * np.sin(2 * np.pi * 1000 * t)
    y = speech.resample(x, 16000, 8000)
    assert len(y) == 8000
    expected = 10000 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)
    assert np.abs(y[100:-100] - expected[100:-100]).max() < 150  # within 1.5 % inside


@pytest.mark.parametrize(
    ("codec", "rec_rate", "mode"),
    [
        ("PCMU/8000", 8000, "nb"),
        ("G722/16000", 16000, "wb"),
        ("speex/16000", 16000, "wb"),
        ("speex/16000", 8000, "nb"),
        ("GSM/8000", 16000, "nb"),
        (None, 8000, "nb"),
    ],
)
def test_wideband_scoring_needs_a_16k_codec_and_a_16k_recording(codec, rec_rate, mode):
    assert speech.mode_for(codec, rec_rate) == mode
