"""MOS-LQO of a received recording against the reference the sender looped (ITU-T P.862).

Pure computation (numpy and the `pesq` package, no I/O): the supervisor runs it
in a separate process (see scorer.py) so neither an endpoint host's event loop
nor the supervisor's asyncio loop stalls while it works.

The sender's host loops its reference from host start, so a call receives it
from an arbitrary point of the loop. `align` finds that point by
cross-correlating the recording with the looped reference; PESQ then compares
the recording with the same stretch of the loop (P.862 does its own fine
time alignment within that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pesq import pesq as _pesq

MIN_SPEECH_S = 2.0  # shorter recordings give no stable score


@dataclass(frozen=True)
class Score:
    mos_lqo: float
    mode: str  # "nb" (P.862 + P.862.1 mapping) or "wb" (P.862.2)
    clock_rate: int
    seconds: float
    offset_s: float  # where in the reference loop the recording started


def mode_for(codec: str | None, rec_rate: int) -> str:
    """Wide-band (P.862.2) for a 16 kHz codec (G722/16000, speex/16000) recorded at 16 kHz;
    narrow-band (P.862 + P.862.1) for the rest."""
    parts = (codec or "").split("/")
    rate = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 8000
    return "wb" if rate >= 16_000 and rec_rate >= 16_000 else "nb"


def resample(x: np.ndarray, src: int, dst: int, taps: int = 32) -> np.ndarray:
    """Windowed-sinc resampling (band-limited to the lower Nyquist); float64 out."""
    x = np.asarray(x, dtype=np.float64)
    if src == dst:
        return x
    n_out = int(len(x) * dst / src)
    pos = np.arange(n_out) * (src / dst)  # output sample positions in input samples
    cutoff = min(1.0, dst / src)
    base = np.floor(pos).astype(np.int64)
    out = np.zeros(n_out)
    for k in range(-taps + 1, taps + 1):
        idx = base + k
        d = pos - idx
        w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * d / taps))
        valid = (idx >= 0) & (idx < len(x))
        out[valid] += w[valid] * x[idx[valid]]
    return out


def at_rate(pcm: bytes, src: int, dst: int) -> bytes:
    """16-bit PCM resampled to `dst`: the supervisor hands hosts their reference at the
    host's clock rate, so the bridge plays exactly the samples PESQ compares with."""
    x = resample(np.frombuffer(pcm, dtype="<i2"), src, dst)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def align(reference: np.ndarray, recording: np.ndarray) -> int:
    """Offset into the looped reference where the recording best matches (FFT xcorr)."""
    n = len(reference)
    reps = int(np.ceil(len(recording) / n)) + 1
    looped = np.tile(reference, reps)
    size = 1 << int(np.ceil(np.log2(len(looped) + len(recording))))
    corr = np.fft.irfft(np.fft.rfft(looped, size) * np.conj(np.fft.rfft(recording, size)), size)
    return int(np.argmax(corr[:n]))


def score(
    reference: np.ndarray, ref_rate: int, recording: np.ndarray, rec_rate: int, codec: str | None
) -> Score:
    """PESQ MOS-LQO of `recording` (int16 PCM) against the looped `reference` (int16 PCM)."""
    mode = mode_for(codec, rec_rate)
    rate = 16_000 if mode == "wb" else 8_000
    ref = resample(reference, ref_rate, rate)
    rec = resample(recording, rec_rate, rate)
    if len(rec) < MIN_SPEECH_S * rate:
        raise ValueError(f"recording: {len(rec) / rate:.2f} s is under {MIN_SPEECH_S} s")
    offset = align(ref, rec)
    reps = int(np.ceil((offset + len(rec)) / len(ref)))
    stretch = np.tile(ref, reps)[offset : offset + len(rec)]
    mos = float(_pesq(rate, stretch.astype(np.float32), rec.astype(np.float32), mode))
    return Score(round(mos, 3), mode, rate, round(len(rec) / rate, 3), round(offset / rate, 3))
