"""Audio uploads under /api/v1/audio: a WAV senders play instead of the tone.

The file is validated (callmeter_common.wav), stored once in the NATS object
store under its content hash, and a test group names it by that reference
(`audio: "sha256:..."`); workers fetch it by reference, so events never carry it.

An upload belongs to a project (`?project=`, else the key's one project, else
`default`): only tests of that project may name it, and to anybody who sees none
of the projects it was uploaded into it answers as an unknown reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from callmeter_common import wav
from callmeter_storage import resources

from . import service
from .authz import Principal, PrincipalDep, Role, require
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
async def upload_audio(
    request: Request,
    p: PlatformDep,
    who: PrincipalDep,
    project: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9 _.-]+$",
            description="The project it is for (default: the key's project, else `default`).",
        ),
    ] = None,
) -> dict[str, Any]:
    """The request body is the WAV file: 16-bit PCM, mono, 8 or 16 kHz, 1-60 s, at most 2 MB.

    Returns its reference for the `audio` field of a group of a test of `project`
    (other projects' tests cannot name it). Uploading the same file twice gives the
    same reference.
    """
    target = _project(who, project)
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
    await service.query(p, resources.add_audio, target, info.ref)
    return {**_info(info), "project": target}


def _project(who: Principal, asked: str | None) -> str:
    only = who.project
    if only is not None and asked not in (None, only):
        message = f"project: this API key may only use project {only!r}"
        raise ApiError(403, "forbidden", message, "project")
    project = asked or only or "default"
    if not who.may(Role.EDITOR, project):
        message = f"project: you may not upload audio to project {project!r}"
        raise ApiError(403, "forbidden", message, "project")
    return project


@router.get("/audio/{ref}")
async def audio_info(ref: str, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Format of an uploaded (into a project the caller sees) or shipped audio reference."""
    if ref in wav.BUILTIN:
        return _info(wav.validate(wav.BUILTIN[ref].read_bytes()))
    data = None
    if _UPLOADED.match(ref):
        projects = await service.query(p, resources.audio_projects, ref)
        if any(who.sees(project) for project in projects):
            data = await p.bus.get_object(wav.AUDIO_BUCKET, ref)
    if data is None:
        raise ApiError(404, "not_found", f"no audio {ref!r}", "ref")
    return _info(wav.validate(data))
