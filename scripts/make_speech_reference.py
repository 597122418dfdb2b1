"""Regenerate libs/common/speech_en_16k.wav, the speech reference the project ships.

    apt-get install espeak-ng        # Debian 12: espeak-ng 1.51
    .venv/bin/python scripts/make_speech_reference.py

espeak-ng writes 22,050 Hz; the file is resampled to 16 kHz mono 16-bit (so
G.722 calls can be scored wide-band), trimmed of trailing silence, and given a
noise floor at -60 dBov (fixed seed): synthetic speech pauses are digital zeros,
against which PESQ punishes any codec's idle noise far beyond what a listener
hears (G.722 scored 2.75 wide-band against the bare file, 3.57 with the floor),
while every natural recording has such a floor. The WAV is
committed rather than generated at install: another espeak-ng version speaks
slightly differently, and every score would then move with the machine.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from callmeter_common import wav
from callmeter_worker.supervisor.speech import resample

# Harvard sentences (IEEE 1969, list 1): phonetically balanced, public domain.
TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish."
)
NOISE_FLOOR_DBOV = -60
COMMAND = ["espeak-ng", "-v", "en-us+klatt", "-s", "150", "-w"]


def main() -> int:
    out = Path(wav.BUILTIN["speech-en"])
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run([*COMMAND, str(raw), TEXT], check=True)
        pcm, rate = wav.read_pcm(raw)
    x = resample(np.frombuffer(pcm, dtype="<i2"), rate, 16_000)
    loud = np.nonzero(np.abs(x) > 200)[0]
    x = x[: loud[-1] + 1600]  # keep 100 ms after the last word
    x = x + np.random.default_rng(862).normal(0, 32768 * 10 ** (NOISE_FLOOR_DBOV / 20), len(x))
    wav.write_pcm(out, np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes(), 16_000)
    info = wav.validate(out.read_bytes())
    print(f"{out}: {info.duration_s:.2f} s at {info.clock_rate} Hz, {info.ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
