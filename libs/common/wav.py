"""Audio a test group plays instead of the tone: WAV validation and its reference names.

Pure (stdlib only): the API validates an upload with it, the worker reads the
PCM it plays and scores against. An audio reference is either the name of a
reference the project ships (BUILTIN) or "sha256:<hex>" of an uploaded WAV,
stored in the NATS object store bucket AUDIO_BUCKET under that name.
"""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass
from pathlib import Path

RATES = (8000, 16000)
MIN_SECONDS, MAX_SECONDS = 1.0, 60.0
MAX_BYTES = 2 * 1024 * 1024  # 60 s at 16 kHz is 1.9 MB
AUDIO_BUCKET = "callmeter_audio"
# The speech reference the project ships (docs/speech-quality.md says how it was made).
BUILTIN = {"speech-en": Path(__file__).with_name("speech_en_16k.wav")}
REF_PATTERN = r"^(speech-en|sha256:[0-9a-f]{64})$"


class WavError(ValueError):
    """An unusable WAV; the message names the field (format, rate, channels...)."""


@dataclass(frozen=True)
class WavInfo:
    ref: str  # "sha256:<hex>" of the file's bytes
    clock_rate: int
    frames: int
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.clock_rate


def ref_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate(data: bytes) -> WavInfo:
    """A WAV a sender can play and PESQ can score: PCM 16-bit mono, 8 or 16 kHz, 1-60 s."""
    if len(data) > MAX_BYTES:
        raise WavError(f"size: {len(data)} bytes is over the {MAX_BYTES} byte limit")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            pcm = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise WavError(f"format: not a PCM WAV file ({exc})") from None
    if width != 2:
        raise WavError(f"format: samples must be 16-bit PCM, not {8 * width}-bit")
    if channels != 1:
        raise WavError(f"channels: must be 1 (mono), not {channels}")
    if rate not in RATES:
        raise WavError(f"rate: must be 8000 or 16000 Hz, not {rate}")
    if len(pcm) != frames * 2:
        raise WavError("format: the file is shorter than its header says")
    seconds = frames / rate
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise WavError(f"duration: {seconds:.2f} s is outside {MIN_SECONDS:g}..{MAX_SECONDS:g} s")
    if not any(pcm):
        raise WavError("samples: the file is silent")
    return WavInfo(ref_of(data), rate, frames, len(data))


def read_pcm(path: str | Path) -> tuple[bytes, int]:
    """16-bit mono PCM and clock rate of a WAV (a recording or a validated reference)."""
    return read_pcm_bytes(Path(path).read_bytes(), str(path))


def read_pcm_bytes(data: bytes, name: str = "the WAV") -> tuple[bytes, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise WavError(f"format: {name} is not 16-bit mono PCM")
        return w.readframes(w.getnframes()), w.getframerate()


def write_pcm(path: str | Path, pcm: bytes, clock_rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(clock_rate)
        w.writeframes(pcm)
