"""Allocation: which worker runs which endpoint. Pure, whole-plan assertions."""

from __future__ import annotations

import pytest

from callmeter_dispatcher.allocation import AllocationError, GroupDemand, WorkerSlot, allocate


def eps(group: str, n: int) -> tuple[str, ...]:
    return tuple(f"{group}-{i}" for i in range(1, n + 1))


def per_worker(plan: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for endpoint, worker in plan.items():
        out.setdefault(worker, []).append(endpoint)
    return out


def test_endpoints_spread_evenly_over_equal_workers():
    # Three idle workers with room for 10 each; a group of 6.
    workers = [WorkerSlot("w1", "eu", 10), WorkerSlot("w2", "eu", 10), WorkerSlot("w3", "eu", 10)]
    plan = allocate([GroupDemand("A", eps("A", 6))], workers)
    # Round robin by free slots, ties broken by worker id.
    assert plan == {
        "A-1": "w1",
        "A-2": "w2",
        "A-3": "w3",
        "A-4": "w1",
        "A-5": "w2",
        "A-6": "w3",
    }


def test_the_worker_with_most_free_slots_is_filled_first_until_levels_even_out():
    # w1 is idle, w2 and w3 are nearly full.
    workers = [WorkerSlot("w1", "eu", 6), WorkerSlot("w2", "eu", 2), WorkerSlot("w3", "eu", 2)]
    plan = allocate([GroupDemand("A", eps("A", 6))], workers)
    # w1 takes endpoints until every worker has 2 free, then they alternate.
    assert per_worker(plan) == {"w1": ["A-1", "A-2", "A-3", "A-4", "A-5"], "w2": ["A-6"]}


def test_capacity_is_never_exceeded_and_exactly_full_is_allowed():
    workers = [WorkerSlot("w1", "eu", 3), WorkerSlot("w2", "eu", 1), WorkerSlot("w0", "eu", 0)]
    plan = allocate([GroupDemand("A", eps("A", 4))], workers)
    # A worker with no free slot gets nothing; the others fill up exactly.
    assert per_worker(plan) == {"w1": ["A-1", "A-2", "A-3"], "w2": ["A-4"]}


def test_groups_share_the_same_free_slots_in_the_order_given():
    workers = [WorkerSlot("w1", "eu", 3), WorkerSlot("w2", "eu", 3)]
    plan = allocate([GroupDemand("A", eps("A", 3)), GroupDemand("B", eps("B", 3))], workers)
    assert plan == {
        "A-1": "w1",
        "A-2": "w2",
        "A-3": "w1",
        "B-1": "w2",
        "B-2": "w1",
        "B-3": "w2",
    }


def test_explicit_worker_selection_is_honoured_even_when_others_are_freer():
    workers = [WorkerSlot("big", "eu", 100), WorkerSlot("w2", "eu", 4), WorkerSlot("w3", "eu", 4)]
    demands = [GroupDemand("A", eps("A", 3), workers=("w3", "w2")), GroupDemand("B", eps("B", 2))]
    plan = allocate(demands, workers)
    # A stays on its chosen workers; B, auto-distributed, goes to the freest.
    assert plan == {"A-1": "w2", "A-2": "w3", "A-3": "w2", "B-1": "big", "B-2": "big"}


def test_region_filters_the_eligible_workers():
    workers = [
        WorkerSlot("eu1", "eu", 10),
        WorkerSlot("us1", "us", 10),
        WorkerSlot("us2", "us", 10),
    ]
    demands = [
        GroupDemand("A", eps("A", 2), region="eu"),
        GroupDemand("B", eps("B", 2), region="us"),
    ]
    plan = allocate(demands, workers)
    assert plan == {"A-1": "eu1", "A-2": "eu1", "B-1": "us1", "B-2": "us2"}


def test_not_enough_capacity_is_a_clear_reason_naming_the_group():
    workers = [WorkerSlot("w1", "eu", 2), WorkerSlot("w2", "eu", 1)]
    with pytest.raises(AllocationError) as err:
        allocate([GroupDemand("A", eps("A", 2)), GroupDemand("B", eps("B", 2))], workers)
    # A fits; B needs 2 slots but only 1 is left.
    assert str(err.value) == "group 'B' needs 2 endpoint slots, its eligible workers have 1 free"


def test_no_worker_in_the_region_is_a_clear_reason():
    with pytest.raises(AllocationError) as err:
        allocate([GroupDemand("A", eps("A", 1), region="ap")], [WorkerSlot("w1", "eu", 9)])
    assert str(err.value) == "group 'A': no online worker in region 'ap'"


def test_selecting_a_worker_that_is_not_online_is_a_clear_reason():
    with pytest.raises(AllocationError) as err:
        allocate([GroupDemand("A", eps("A", 1), workers=("w9",))], [WorkerSlot("w1", "eu", 9)])
    assert str(err.value) == "group 'A' selects workers that are not online: w9"


def test_ten_thousand_endpoints_over_fifty_workers_balance_to_within_one():
    workers = [WorkerSlot(f"w{i:02d}", "eu", 250) for i in range(50)]
    plan = allocate([GroupDemand("A", eps("A", 10_000))], workers)
    counts = {w: len(e) for w, e in per_worker(plan).items()}
    assert counts == {f"w{i:02d}": 200 for i in range(50)}
