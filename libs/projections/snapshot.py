"""A RunsProjection as bytes and back, stamped with the fold version and its position.

Control services keep only runs that are not finished, so a snapshot is small and
independent of history. A snapshot made by another FOLD_VERSION (or unreadable)
decodes to None: the caller then folds from sequence 1 instead of resuming from a
state the current code might not have produced.
"""

from __future__ import annotations

import json
import zlib

from .documents import endpoint_state, run_state, to_doc
from .runs import RunsProjection
from .version import FOLD_VERSION


def encode_runs(runs: RunsProjection, version: str = FOLD_VERSION) -> bytes:
    body = {
        "version": version,
        "position": runs.position,
        "runs": [to_doc(r) for r in runs.runs.values()],
        "endpoints": {
            run_id: [to_doc(e) for e in eps.values()] for run_id, eps in runs.endpoints.items()
        },
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def decode_runs(data: bytes, version: str = FOLD_VERSION) -> RunsProjection | None:
    try:
        body = json.loads(zlib.decompress(data))
    except (zlib.error, ValueError):
        return None
    if not isinstance(body, dict) or body.get("version") != version:
        return None
    runs = RunsProjection(position=int(body["position"]))
    for doc in body["runs"]:
        run = run_state(doc)
        runs.restore(run, (endpoint_state(e) for e in body["endpoints"].get(run.run_id, [])))
    return runs
