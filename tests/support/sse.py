"""Reading server-sent event streams in tests."""

from __future__ import annotations


def read_sse(response, stop_after: int | None = None, until_type: str | None = None):  # type: ignore[no-untyped-def]
    """(id, type) of each SSE frame, until `stop_after` frames or an event of `until_type`."""
    frames, current = [], {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["type"] = line[7:]
        elif line == "" and "id" in current:
            frames.append((current["id"], current["type"]))
            if current["type"] == until_type or (stop_after and len(frames) >= stop_after):
                break
            current = {}
    return frames
