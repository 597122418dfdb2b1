"""Audio references -> WAV files an endpoint host can loop, at the host's clock rate.

A group's audio is the shipped speech reference or an uploaded WAV kept in the
NATS object store (callmeter_common.wav.AUDIO_BUCKET) under its content hash;
the test definition carries only that reference. The supervisor fetches it once,
resamples it to the host's clock rate (so the conference bridge plays exactly
the samples PESQ later compares with) and keeps the file for its hosts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from callmeter_common import wav
from callmeter_common.bus import Bus

from .speech import at_rate


class AudioStore:
    def __init__(self, bus: Bus, directory: str) -> None:
        self.bus, self.dir = bus, Path(directory)
        self.paths: dict[tuple[str, int], str] = {}
        self._lock = asyncio.Lock()

    async def path(self, ref: str, clock_rate: int) -> str:
        """Local WAV of `ref` at `clock_rate`; raises LookupError / WavError."""
        async with self._lock:
            key = (ref, clock_rate)
            if key not in self.paths:
                data = await self._bytes(ref)
                wav.validate(data)
                out = self.dir / f"{ref.replace(':', '-')}-{clock_rate}.wav"
                pcm, rate = wav.read_pcm_bytes(data)
                wav.write_pcm(out, at_rate(pcm, rate, clock_rate), clock_rate)
                self.paths[key] = str(out)
            return self.paths[key]

    async def _bytes(self, ref: str) -> bytes:
        if ref in wav.BUILTIN:
            return wav.BUILTIN[ref].read_bytes()
        data = await self.bus.get_object(wav.AUDIO_BUCKET, ref)
        if data is None:
            raise LookupError(f"{ref} was never uploaded (POST /api/v1/audio)")
        if wav.ref_of(data) != ref:
            raise LookupError(f"audio {ref}: stored bytes do not match their hash")
        return data
