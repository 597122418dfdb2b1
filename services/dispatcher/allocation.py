"""Endpoint-to-worker allocation: pure, no I/O, whole-result testable."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSlot:
    worker_id: str
    region: str
    free: int


@dataclass(frozen=True)
class GroupDemand:
    group: str
    endpoint_ids: tuple[str, ...]
    region: str | None = None
    workers: tuple[str, ...] = ()  # explicit selection; empty = auto by region


class AllocationError(Exception):
    """Not enough capacity (or no eligible worker); the message says which group and why."""


def allocate(demands: Sequence[GroupDemand], workers: Sequence[WorkerSlot]) -> dict[str, str]:
    """Assign every endpoint to a worker, spreading by free capacity.

    Each endpoint goes to the eligible worker with the most free slots left
    (ties by worker id), which spreads evenly and never exceeds a worker's
    free slots. Groups are served in the order given.
    """
    free = {w.worker_id: w.free for w in workers}
    by_id = {w.worker_id: w for w in workers}
    plan: dict[str, str] = {}
    for demand in demands:
        eligible = _eligible(demand, by_id)
        heap = [(-free[w], w) for w in eligible if free[w] > 0]
        heapq.heapify(heap)
        available = sum(free[w] for w in eligible)
        if available < len(demand.endpoint_ids):
            raise AllocationError(
                f"group {demand.group!r} needs {len(demand.endpoint_ids)} endpoint slots, "
                f"its eligible workers have {available} free"
            )
        for endpoint_id in demand.endpoint_ids:
            neg_free, worker_id = heapq.heappop(heap)
            plan[endpoint_id] = worker_id
            free[worker_id] = -neg_free - 1
            if free[worker_id] > 0:
                heapq.heappush(heap, (-free[worker_id], worker_id))
    return plan


def _eligible(demand: GroupDemand, by_id: Mapping[str, WorkerSlot]) -> list[str]:
    if demand.workers:
        missing = [w for w in demand.workers if w not in by_id]
        if missing:
            raise AllocationError(
                f"group {demand.group!r} selects workers that are not online: {', '.join(missing)}"
            )
        return sorted(demand.workers)
    eligible = sorted(w.worker_id for w in by_id.values() if demand.region in (None, w.region))
    if not eligible:
        raise AllocationError(
            f"group {demand.group!r}: no online worker in region {demand.region!r}"
        )
    return eligible
