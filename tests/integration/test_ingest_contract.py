"""The sample contract end to end: what a real endpoint host writes is what lands in
PostgreSQL, column by column (real pjsua2 call, real NATS, real metrics-ingest, real
PostgreSQL). The host's lines are read here with the plain json module, not with the
contract's decoder, so the comparison does not lean on the code it checks."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import msgspec
import psycopg
import pytest

from callmeter_common.bus import Bus
from callmeter_ingest.consumer import consume
from callmeter_ingest.handlers import Ingest
from callmeter_storage.migrations import migrate
from callmeter_vocabulary.sample import FIELDS
from callmeter_worker import protocol as proto
from callmeter_worker.supervisor.batcher import SampleBatcher
from tests.integration.test_host_calls import run_pairs, start_hosts
from tests.integration.test_ingest import bus, own_nats, wait_rows

pytestmark = pytest.mark.integration
pytest.importorskip("pjsua2")
hosts = pytest.fixture(name="hosts")(start_hosts)
__all__ = ["bus", "own_nats"]  # fixtures this module uses
# Where the supervisor would place them: the run's endpoints by their host slots.
ENDPOINTS = {"r0": "callee-1", "c0": "caller-1"}


async def test_every_value_a_host_wrote_is_the_value_stored(  # type: ignore[no-untyped-def]
    hosts, bus: Bus, database_url: str
) -> None:
    migrate(database_url)
    run_id = uuid.uuid4().hex[:8]
    # A real call, with loss on the caller's side, so counters and ratios are not all zero.
    rh, ch = hosts(), hosts("--drop-tx-pct", "10")
    run_pairs(rh, ch, 1, 4.0, drop_tx_pct=10)
    lines = [line for h in (rh, ch) for line in h.lines if line.startswith(b'{"ev":"sample"')]
    assert len(lines) >= 12

    # As the supervisor: each line decoded, stamped with its endpoint's id, batched, published.
    batcher = SampleBatcher(bus.publish, "w-1", interval_s=0.05)
    for line in lines:
        msg = proto.decode_line(line)
        endpoint = ENDPOINTS[msg["endpoint_id"]]
        batcher.add(run_id, msgspec.structs.replace(msg["sample"], endpoint_id=endpoint))
    await batcher.flush()

    # metrics-ingest stores them.
    stop = asyncio.Event()
    task = asyncio.create_task(consume(bus, Ingest(bus, database_url, 0.5), stop, batch=100))
    await wait_rows(database_url, run_id, len(lines))
    stop.set()
    await task

    # Each stored row holds exactly what the host wrote, column by column.
    columns = ["time", *FIELDS[1:], "run_id", "group_name"]
    with psycopg.connect(database_url) as conn:
        stored = {
            (row[1], row[2], row[3]): dict(zip(columns, row, strict=True))
            for row in conn.execute(
                f"SELECT {', '.join(columns)} FROM metric_samples WHERE run_id = %s", (run_id,)
            )
        }
    assert len(stored) == len(lines)
    nonzero = set()
    for line in lines:
        wrote = json.loads(line)
        values = dict(zip(FIELDS, wrote["sample"], strict=True))
        endpoint = ENDPOINTS[values["endpoint_id"]]
        row = stored[(endpoint, values["direction"], values["seq"])]
        assert row["time"] == datetime.fromisoformat(values["ts"])
        assert (row["run_id"], row["group_name"]) == (run_id, endpoint.split("-")[0])
        for key in FIELDS[4:]:
            assert row[key] == values[key], (key, row[key], values[key])
            assert (
                type(row[key]) is type(values[key])
                or values[key] is None
                or (
                    type(values[key]) is int and type(row[key]) is float  # 50 written for 50.0
                )
            ), key
            if values[key]:
                nonzero.add(key)
    # Real measurements: the comparison covered every kind of value, not only nulls.
    assert {"mos", "packets", "codec", "jitter_ms", "simulated_drops", "bytes"} <= nonzero
