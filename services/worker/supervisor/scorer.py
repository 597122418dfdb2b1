"""PESQ scoring of recordings, off the supervisor's event loop, in one child process.

P.862 costs ~0.1 s of CPU per 8 s recording plus resampling and alignment
(bench/speech_quality.py measures it against the CPU of the calls themselves).
It runs in a single spawned process: an endpoint host would stall its media
loop for that long (and every host would pay for numpy at start-up); in the
supervisor's own thread it would hold the GIL and stall the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

RECORD_MAX_S = 10.0  # P.862 asks for 8-12 s of speech
RECORD_MIN_S = 3.0
CALL_MARGIN_S = 1.5  # the recording starts 1 s into the call (recording.SETTLE_S) and must
# end before the caller's BYE


def record_seconds(duration_s: float) -> float | None:
    """How long a sampled receiver records in a call of `duration_s`; None: too short."""
    seconds = min(RECORD_MAX_S, duration_s - CALL_MARGIN_S)
    return round(seconds, 3) if seconds >= RECORD_MIN_S else None


def score_files(reference: str, recording: str, codec: str | None) -> dict[str, Any]:
    """In the child: score one recording (and delete it). A dict, so it pickles plainly."""
    import numpy as np  # the child imports numpy/pesq; the supervisor's loop never waits on it

    from callmeter_common import wav

    from .speech import score

    try:
        ref, ref_rate = wav.read_pcm(reference)
        rec, rec_rate = wav.read_pcm(recording)
        s = score(np.frombuffer(ref, "<i2"), ref_rate, np.frombuffer(rec, "<i2"), rec_rate, codec)
        return {"mos_lqo": s.mos_lqo, "mode": s.mode, "seconds": s.seconds, "error": ""}
    except (ValueError, OSError) as exc:
        return {"mos_lqo": None, "mode": None, "seconds": None, "error": str(exc)}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(recording)


class Scorer:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def score(self, reference: str, recording: str, codec: str | None) -> dict[str, Any]:
        if self._pool is None:  # started on first use: runs without speech never pay for it
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded asyncio process
            # niced: scoring may wait, the endpoint hosts' audio may not
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=ctx, initializer=os.nice, initargs=(10,)
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, score_files, reference, recording, codec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
