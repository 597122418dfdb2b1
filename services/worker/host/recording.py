"""A receiver's recording of the audio it receives, for PESQ scoring by the supervisor.

Only endpoints sampled for speech quality record (start_endpoint's record_s).
The recorder is a conference-bridge port (AudioMediaRecorder, a WAV writer at
the host's clock rate) fed from the call's stream after jitter buffer and PLC,
i.e. what a listener would hear. Every step runs in the host's main loop, never
inside a pjsua2 callback. The host only records; scoring (numpy, P.862) happens
in the supervisor so that no host's event loop stalls on it.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import pjsua2 as pj

from .context import HostContext

log = logging.getLogger("callmeter.host")
_names = itertools.count(1)
SETTLE_S = 1.0  # skip the first second of a call: the jitter buffer is still settling


class Recording:
    def __init__(self, host: HostContext, endpoint_id: str, record_s: float | None) -> None:
        self.host, self.endpoint_id, self.record_s = host, endpoint_id, record_s
        self.recorder: Any = None
        self.media: Any = None
        self.path = ""
        self.codec: str | None = None
        self.started = 0.0
        self.first_tick: float | None = None
        self.done = record_s is None

    def tick(self, call: pj.Call, now: float) -> None:
        """Start once the call has audio; stop after record_s seconds."""
        if self.done:
            return
        if self.first_tick is None:
            self.first_tick = now
        if self.recorder is None:
            if now - self.first_tick >= SETTLE_S:
                self._start(call, now)
        elif now - self.started >= (self.record_s or 0):
            self.stop(now)

    def _start(self, call: pj.Call, now: float) -> None:
        try:
            media = call.getAudioMedia(-1)
            info = call.getStreamInfo(0)
        except pj.Error:
            return  # no active audio yet; try on the next tick
        self.path = os.path.join(
            self.host.record_dir, f"callmeter-rec-{os.getpid()}-{next(_names)}.wav"
        )
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(self.path)
            media.startTransmit(recorder)
        except pj.Error as exc:
            self.done = True
            self._report(None, f"recorder failed: {exc.info()}")
            return
        self.recorder, self.media, self.started = recorder, media, now
        self.codec = f"{info.codecName}/{info.codecClockRate}"

    def stop(self, now: float) -> None:
        """Close the WAV (its header is written when the recorder is destroyed) and report."""
        if self.done:
            return
        self.done = True
        if self.recorder is None:
            self._report(None, "the call had no audio to record")
            return
        try:
            self.media.stopTransmit(self.recorder)
        except pj.Error:
            pass  # the stream is already gone; the recorder simply stopped receiving
        self.recorder = self.media = None  # destroys the pjsua recorder: the file is complete
        self._report(round(now - self.started, 3), "")

    def _report(self, seconds: float | None, error: str) -> None:
        self.host.emit(
            "recording",
            endpoint_id=self.endpoint_id,
            path=self.path if seconds else "",
            seconds=seconds,
            codec=self.codec,
            error=error,
        )
