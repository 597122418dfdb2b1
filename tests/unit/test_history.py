"""Start-up independent of history: state documents, snapshots, finished runs leave memory."""

from __future__ import annotations

from pathlib import Path

from callmeter_common.reconciler import World
from callmeter_events import EndpointFinished, RunCreated, StopRequested
from callmeter_events import TestSaved as SavedTest
from callmeter_projections import RunsProjection
from callmeter_projections.documents import endpoint_state, run_state, saved_test, to_doc
from callmeter_projections.snapshot import decode_runs, encode_runs
from callmeter_projections.version import FOLD_VERSION, fold_sources, source_hash
from callmeter_storage.readmodels import ReadModels, settled
from tests.support.history import PAIR, T0, history


def test_states_survive_their_documents_unchanged():
    full = RunsProjection()
    for seq, event in enumerate(history(), 1):
        full.apply(seq, event)
    assert full.runs["r1"].evaluation is not None and full.runs["r1"].history
    for run in full.runs.values():
        assert run_state(to_doc(run)) == run
        for ep in full.endpoints[run.run_id].values():
            assert endpoint_state(to_doc(ep)) == ep
    models = ReadModels()
    models.fold(1, SavedTest(test_id="t", definition=PAIR, occurred_at=T0))
    assert saved_test(to_doc(models.tests["t"])) == models.tests["t"]


def test_finished_runs_leave_the_control_services_memory():
    world = World()
    for seq, event in enumerate(history(), 1):
        world.apply(seq, event)
    assert sorted(world.runs.runs) == ["r4", "r6"]  # only runs in flight
    assert sorted(world.runs.endpoints) == ["r4", "r6"]
    # A late report for a finished run changes nothing (no decision concerns it).
    late = EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="WORKER_LOST")
    world.apply(10_000, late)
    assert sorted(world.runs.runs) == ["r4", "r6"]


def test_resuming_from_a_snapshot_gives_the_state_of_a_full_fold():
    log = history()
    full = World()
    for seq, event in enumerate(log, 1):
        full.apply(seq, event)
    for cut in (0, 1, 7, len(log) // 2, len(log) - 3, len(log)):
        head = World()
        for seq, event in enumerate(log[:cut], 1):
            head.apply(seq, event)
        resumed = World(runs=decode_runs(encode_runs(head.runs)))  # type: ignore[arg-type]
        assert resumed.runs.position == cut
        for seq, event in enumerate(log[cut:], cut + 1):
            resumed.apply(seq, event)
        assert resumed.runs == full.runs, f"cut at {cut}"


def test_a_snapshot_of_another_fold_version_is_not_resumed():
    runs = RunsProjection(position=42)
    assert decode_runs(encode_runs(runs)) == runs
    assert decode_runs(encode_runs(runs, version="older-fold")) is None
    assert decode_runs(b"not a snapshot") is None


def test_the_fold_version_covers_the_fold_and_event_sources(tmp_path: Path):
    names = {p.name for p in fold_sources()}
    assert {"runs.py", "endpoints.py", "tests.py", "documents.py", "run_events.py"} <= names
    assert source_hash(fold_sources()) == FOLD_VERSION
    copies = []
    for path in fold_sources():
        copy = tmp_path / path.parent.name / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    assert source_hash(copies) == FOLD_VERSION
    endpoints = next(c for c in copies if c.name == "endpoints.py")
    endpoints.write_text(endpoints.read_text() + "\n# a change of the fold\n")
    assert source_hash(copies) != FOLD_VERSION


def test_read_models_forget_settled_runs_once_written_and_spot_late_events():
    models = ReadModels()
    for seq, event in enumerate(history(), 1):
        models.fold(seq, event)
    assert sorted(r for r, run in models.runs.runs.items() if settled(run)) == [
        "r1",
        "r2",
        "r3",
        "r5",
    ]
    assert models.evict_settled(keep={"r2"}) == 3  # r2 still has rows to write
    assert sorted(models.runs.runs) == ["r2", "r4", "r6"]
    late = EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="WORKER_LOST")
    assert models.unknown_run(late) == "r1"
    assert models.unknown_run(RunCreated(run_id="r9", test_id="t", definition=PAIR)) is None
    assert models.unknown_run(StopRequested(run_id="r4")) is None
