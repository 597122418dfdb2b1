"""Audio uploads under /api/v1/audio: a WAV senders play instead of the tone.

The file is validated (callmeter_common.wav), stored once in the NATS object
store under its content hash, and a test group names it by that reference
(`audio: "sha256:..."`); workers fetch it by reference, so events never carry it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request, status

from callmeter_common import wav

from .authz import Role, require
from .deps import PlatformDep
from .errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["audio"])
_UPLOADED = re.compile(r"^sha256:[0-9a-f]{64}$")
_WAV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _info(info: wav.WavInfo) -> dict[str, Any]:
    return {
        "audio": info.ref,
        "clock_rate": info.clock_rate,
        "duration_s": round(info.duration_s, 3),
        "size_bytes": info.size_bytes,
    }


def _invalid(exc: wav.WavError) -> ApiError:
    field = str(exc).split(":", 1)[0]
    return ApiError(422, "validation_error", str(exc), field)


@router.post(
    "/audio",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_WAV_BODY,
    dependencies=[Depends(require(Role.EDITOR))],
)
async def upload_audio(request: Request, p: PlatformDep) -> dict[str, Any]:
    """The request body is the WAV file: 16-bit PCM, mono, 8 or 16 kHz, 1-60 s, at most 2 MB.

    Returns its reference for a group's `audio` field. Uploading the same file
    twice gives the same reference.
    """
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > wav.MAX_BYTES:
            raise ApiError(413, "too_large", f"size: over the {wav.MAX_BYTES} byte limit", "size")
    try:
        info = wav.validate(bytes(data))
    except wav.WavError as exc:
        raise _invalid(exc) from None
    await p.bus.put_object(wav.AUDIO_BUCKET, info.ref, bytes(data))
    return _info(info)


@router.get("/audio/{ref}")
async def audio_info(ref: str, p: PlatformDep) -> dict[str, Any]:
    """Format of an uploaded or shipped audio reference."""
    if ref in wav.BUILTIN:
        return _info(wav.validate(wav.BUILTIN[ref].read_bytes()))
    data = await p.bus.get_object(wav.AUDIO_BUCKET, ref) if _UPLOADED.match(ref) else None
    if data is None:
        raise ApiError(404, "not_found", f"no audio {ref!r}", "ref")
    return _info(wav.validate(data))
