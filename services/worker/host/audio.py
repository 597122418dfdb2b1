"""Host audio: codec-name resolution and the tone source (pure, no pjsua2).

The source is a short generated sine WAV, looped by AudioMediaPlayer.

A real (non-silent) source matters: with silence PJSIP's VAD/CNG would send
almost nothing, and audio levels would read 0. One player per host process
feeds every call through the conference bridge, so the cost is one file port.
"""

from __future__ import annotations

import math
import struct
import tempfile
import wave


def tone_pcm(clock_rate: int, freq_hz: float = 440.0, seconds: float = 1.0, level: float = 0.3):
    """16-bit mono PCM of a sine that loops without a click (whole periods only)."""
    n = int(clock_rate * seconds)
    periods = max(1, round(freq_hz * n / clock_rate))
    amp = int(32767 * level)
    step = 2 * math.pi * periods / n
    return struct.pack(f"<{n}h", *(int(amp * math.sin(step * i)) for i in range(n)))


def write_tone_wav(clock_rate: int, freq_hz: float = 440.0, seconds: float = 1.0) -> str:
    """Write the tone to a temp WAV file and return its path (the caller deletes it)."""
    with tempfile.NamedTemporaryFile(prefix="callmeter-tone-", suffix=".wav", delete=False) as f:
        path = f.name
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(clock_rate)
        w.writeframes(tone_pcm(clock_rate, freq_hz, seconds))
    return path


def resolve_codecs(names: list[str], available: list[str]) -> list[str]:
    """Codec names ("PCMU") or ids ("PCMU/8000/1") -> PJSIP codec ids, deduplicated.

    A bare name takes its lowest clock rate ("speex" -> "speex/8000/1").
    Raises ValueError for a codec this build lacks.
    """
    out = []
    for name in names:
        low = name.lower()
        matches = [c for c in available if c.lower() == low] or sorted(
            (c for c in available if c.split("/")[0].lower() == low),
            key=lambda c: int(c.split("/")[1]),
        )
        if not matches:
            raise ValueError(f"codec {name!r} not available in this build")
        if matches[0] not in out:
            out.append(matches[0])
    return out
