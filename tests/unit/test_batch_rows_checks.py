"""batch_rows checks whole batches at once: every check a record or value had still holds.

A bad record is rejected alone, with a reason naming the key, and the other
records of the batch give the same rows as a batch without it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from callmeter_events import MetricSample, encode
from callmeter_events.metric_events import FLOAT_KEYS, INT_KEYS, TEXT_KEYS, MetricBatch
from callmeter_storage.batches import BatchRows, batch_rows
from callmeter_storage.samples import SampleRejected, to_row, to_write_order

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
FULL: dict[str, Any] = {
    **{k: 1.5 + i / 7 for i, k in enumerate(FLOAT_KEYS)},
    **{k: 40 + i for i, k in enumerate(INT_KEYS)},
    **dict.fromkeys(TEXT_KEYS, "PCMU"),
}
FLOATS, INTS, TEXTS = 4, 5, 6  # where a record holds its values of each kind
MOS, PACKETS, CODEC = FLOAT_KEYS.index("mos"), INT_KEYS.index("packets"), TEXT_KEYS.index("codec")


def sample(i: int, base: dict[str, Any] = FULL, **metrics: Any) -> MetricSample:
    return MetricSample(
        run_id="r1",
        endpoint_id=f"G{i % 3}-{i}",
        direction=("send", "recv")[i % 2],
        seq=i,
        ts=T0 + timedelta(seconds=i // 4),
        metrics={**base, **metrics},
    )


def tail(reason: str) -> str:
    """A reason without the record it names: what is wrong."""
    return reason.split(": ", 1)[1]


def payload(samples: list[MetricSample]) -> dict[str, Any]:
    return orjson.loads(encode(MetricBatch.pack("r1", "w.1", 7, samples)))  # type: ignore[no-any-return]


def rows(samples: list[MetricSample]) -> list[tuple[Any, ...]]:
    return [to_write_order(to_row(s)) for s in samples]


def set_cell(kind: int, index: int, value: Any) -> Callable[[list[Any]], None]:
    def change(record: list[Any]) -> None:
        record[kind][index] = value

    return change


def set_field(index: int, value: Any) -> Callable[[list[Any]], None]:
    def change(record: list[Any]) -> None:
        record[index] = value

    return change


def cut(kind: int) -> Callable[[list[Any]], None]:
    def change(record: list[Any]) -> None:
        record[kind].pop()

    return change


N_F = len(FLOAT_KEYS)
HEAD = "record 1: "
CELL = "G1-1 recv seq 1: "
BAD_RECORDS: list[tuple[Callable[[list[Any]], None], str]] = [
    # the values, each named by its key
    (set_cell(FLOATS, MOS, "high"), CELL + "mos: expected a number, got str"),
    (set_cell(FLOATS, MOS, True), CELL + "mos: expected a number, got bool"),
    (set_cell(FLOATS, MOS, [4.2]), CELL + "mos: expected a number, got list"),
    (set_cell(FLOATS, MOS, {"v": 4.2}), CELL + "mos: expected a number, got dict"),
    (set_cell(FLOATS, N_F - 1, ""), CELL + f"{FLOAT_KEYS[-1]}: expected a number, got str"),
    (set_cell(INTS, PACKETS, 49.5), CELL + "packets: expected an integer, got 49.5"),
    (set_cell(INTS, PACKETS, False), CELL + "packets: expected a number, got bool"),
    (set_cell(INTS, PACKETS, True), CELL + "packets: expected a number, got bool"),
    (set_cell(INTS, PACKETS, "50"), CELL + "packets: expected a number, got str"),
    (set_cell(INTS, PACKETS, 2**63), CELL + f"packets: expected an integer, got {2**63}"),
    (set_cell(INTS, PACKETS, -(2**63)), CELL + f"packets: expected an integer, got {-(2**63)}"),
    (set_cell(INTS, PACKETS, 2**64 - 1), CELL + f"packets: expected an integer, got {2**64 - 1}"),
    (set_cell(INTS, PACKETS, 1e19), CELL + "packets: expected an integer, got 1e+19"),
    (set_cell(INTS, 0, []), CELL + f"{INT_KEYS[0]}: expected a number, got list"),
    (set_cell(TEXTS, CODEC, "PC\x00MU"), CELL + "codec: NUL character in text"),
    (set_cell(TEXTS, CODEC, 8), CELL + "codec: expected text, got int"),
    (set_cell(TEXTS, CODEC, 8.0), CELL + "codec: expected text, got float"),
    (set_cell(TEXTS, CODEC, False), CELL + "codec: expected text, got bool"),
    # the record's own fields
    (set_field(3, "yesterday"), HEAD + "ts: not an ISO 8601 time: 'yesterday'"),
    (set_field(3, "2025-01-06T09:00:00"), HEAD + "ts: a timezone is required"),
    (set_field(3, 1736154000), HEAD + "ts: not an ISO 8601 time: 1736154000"),
    (set_field(3, None), HEAD + "ts: not an ISO 8601 time: None"),
    (set_field(3, ["2025-01-06T09:00:00Z"]), HEAD + "ts: not an ISO 8601 time"),
    (set_field(1, "sideways"), HEAD + "direction: expected send or recv, got 'sideways'"),
    (set_field(1, ["recv"]), HEAD + "direction: expected send or recv, got ['recv']"),
    (set_field(1, None), HEAD + "direction: expected send or recv, got None"),
    (set_field(2, True), HEAD + "seq: expected a 32-bit integer, got True"),
    (set_field(2, 1.0), HEAD + "seq: expected a 32-bit integer, got 1.0"),
    (set_field(2, "1"), HEAD + "seq: expected a 32-bit integer, got '1'"),
    (set_field(2, 2**31), HEAD + f"seq: expected a 32-bit integer, got {2**31}"),
    (set_field(2, -(2**31) - 1), HEAD + f"seq: expected a 32-bit integer, got {-(2**31) - 1}"),
    (set_field(0, ""), HEAD + "endpoint_id: expected text"),
    (set_field(0, "G1\x00-1"), HEAD + "endpoint_id: expected text"),
    (set_field(0, 7), HEAD + "endpoint_id: expected text"),
    (set_field(0, ["G1-1"]), HEAD + "endpoint_id: expected text"),
    (set_field(0, None), HEAD + "endpoint_id: expected text"),
    # the record's shape
    (lambda r: r.pop(), HEAD + "expected [endpoint_id, direction, seq, ts, floats, ints, texts]"),
    (lambda r: r.append(None), HEAD + "expected [endpoint_id, direction"),
    (cut(FLOATS), HEAD + f"expected {N_F} values of each kind, as the keys say"),
    (cut(INTS), HEAD + f"expected {len(INT_KEYS)} values of each kind"),
    (lambda r: r[FLOATS].append(1.0), HEAD + f"expected {N_F} values of each kind"),
    (set_field(TEXTS, "P" * len(TEXT_KEYS)), HEAD + f"expected {len(TEXT_KEYS)} values"),  # a str
    (set_field(FLOATS, dict.fromkeys(FLOAT_KEYS, 1.0)), HEAD + f"expected {N_F} values"),
    (set_field(INTS, None), HEAD + f"expected {len(INT_KEYS)} values"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_RECORDS)
def test_a_bad_record_is_rejected_alone_and_the_others_give_their_rows(change, reason) -> None:  # type: ignore[no-untyped-def]
    samples = [sample(i) for i in range(4)]
    data = payload(samples)
    change(data["samples"][1])
    out = batch_rows(data)
    assert [i for i, _ in out.rejected] == [1]
    assert out.rejected[0][1].startswith(reason)
    assert out.records == [0, 2, 3]
    assert out.rows == rows([samples[0], samples[2], samples[3]])


@pytest.mark.parametrize(("change", "reason"), BAD_RECORDS)
def test_a_batch_of_one_bad_record_gives_no_rows(change, reason) -> None:  # type: ignore[no-untyped-def]
    data = payload([sample(0), sample(1)])
    change(data["samples"][1])
    data["samples"] = data["samples"][1:]
    out = batch_rows(data)
    assert out.rows == [] and out.records == []
    assert [i for i, _ in out.rejected] == [0]
    assert tail(out.rejected[0][1]).startswith(tail(reason))


@pytest.mark.parametrize(
    "record", [None, "G1-1", 7, {"endpoint_id": "G1-1"}, ("G1-1", "recv", 1, "x", [], [], [])]
)
def test_a_record_that_is_not_a_list_is_rejected_alone(record: Any) -> None:
    samples = [sample(i) for i in range(3)]
    data = payload(samples)
    data["samples"][1] = record
    out = batch_rows(data)
    assert out.rejected == [
        (1, HEAD + "expected [endpoint_id, direction, seq, ts, floats, ints, texts]")
    ]
    assert out.rows == rows([samples[0], samples[2]])


def test_values_of_a_kind_the_column_converts_are_converted_and_the_rest_kept() -> None:
    samples = [sample(i) for i in range(4)]
    data = payload(samples)
    data["samples"][1][FLOATS][MOS] = 4  # an int in a float column: a float
    data["samples"][2][INTS][PACKETS] = 50.0  # a whole float in an int column: an int
    out = batch_rows(data)
    assert out.rejected == [] and out.records == [0, 1, 2, 3]
    assert out.rows == rows([samples[0], sample(1, mos=4.0), sample(2, packets=50), samples[3]])
    mos, packets = 6 + MOS, 6 + N_F + PACKETS
    assert type(out.rows[1][mos]) is float and type(out.rows[2][packets]) is int


def test_several_bad_records_are_each_named_and_the_good_ones_kept() -> None:
    samples = [sample(i) for i in range(8)]
    data = payload(samples)
    records = data["samples"]
    records[1][FLOATS][MOS] = "x"
    records[3][1] = "up"
    records[4][INTS][PACKETS] = 2**63
    records[6] = records[6][:3]
    out = batch_rows(data)
    assert out.records == [0, 2, 5, 7]
    assert out.rows == rows([samples[i] for i in (0, 2, 5, 7)])
    rejected = sorted(out.rejected)  # a record's own fields are judged before its values
    assert [i for i, _ in rejected] == [1, 3, 4, 6]
    assert "mos:" in rejected[0][1] and "direction:" in rejected[1][1]
    assert "packets:" in rejected[2][1] and "record 6: expected" in rejected[3][1]


@pytest.mark.parametrize(
    "ints",
    [
        {"packets": 2**63 - 1, "packets_lost": -(2**63 - 1)},  # the very ends of int8
        {"packets": 2**62 + 1, "packets_lost": 2**62, "bytes": -(2**62)},  # large, and they fit
        {"packets": 2**62, "packets_lost": 2**62, "bytes": 2**62, "bytes_total": 2**62},
        {"packets": 0, "packets_lost": None, "bytes": -1},
        dict.fromkeys(INT_KEYS),  # all null
        dict.fromkeys(INT_KEYS, 0),
    ],
)
def test_integers_that_fit_an_int8_column_are_kept_as_they_are(ints: dict[str, Any]) -> None:
    assert set(ints) <= set(INT_KEYS)
    samples = [sample(0), sample(1, **ints), sample(2, **ints)]
    out = batch_rows(payload(samples))
    assert out.rejected == []
    assert out.rows == rows(samples)
    assert [type(v) for v in out.rows[1][6 + N_F : 6 + N_F + len(INT_KEYS)]] == [
        type(ints.get(k, FULL[k])) for k in INT_KEYS
    ]


def test_nulls_are_kept_in_every_kind_of_column() -> None:
    samples = [sample(0), sample(1, **dict.fromkeys(FULL)), sample(2, mos=None, codec=None)]
    out = batch_rows(payload(samples))
    assert out.rejected == [] and out.rows == rows(samples)
    assert out.rows[1][6:] == (None,) * len(FULL)


def test_an_empty_batch_gives_nothing() -> None:
    assert batch_rows(payload([])) == BatchRows()


def test_a_run_id_with_a_nul_rejects_the_whole_batch() -> None:
    with pytest.raises(SampleRejected, match="run_id"):
        batch_rows({**payload([sample(0)]), "run_id": "r\x001"})


def test_keys_in_another_order_are_checked_and_placed_record_by_record() -> None:
    samples = [sample(i) for i in range(3)]
    data = payload(samples)
    order = [FLOAT_KEYS.index("jitter_ms"), MOS]  # two float keys, swapped; no int or text keys
    data.update(float_keys=[FLOAT_KEYS[i] for i in order], int_keys=[], text_keys=[])
    for record in data["samples"]:
        record[FLOATS:] = [[record[FLOATS][i] for i in order], [], []]
    data["samples"][1][FLOATS][1] = "high"
    out = batch_rows(data)
    assert out.rejected == [(1, CELL + "mos: expected a number, got str")]
    kept = {"mos": FULL["mos"], "jitter_ms": FULL["jitter_ms"]}
    assert out.rows == rows([sample(0, base=kept), sample(2, base=kept)])


def test_many_batches_with_bad_records_anywhere_keep_exactly_the_good_ones() -> None:
    rnd = random.Random(7)
    samples = [
        sample(i, mos=None if i % 5 == 0 else 4.25, packets=None if i % 3 else i) for i in range(12)
    ]
    clean = rows(samples)
    for _ in range(150):
        data = payload(samples)
        bad: dict[int, str] = {}
        for index, record in enumerate(data["samples"]):
            if rnd.random() < 0.15:
                change, reason = rnd.choice(BAD_RECORDS)
                change(record)
                bad[index] = reason
        out = batch_rows(data)
        assert sorted(i for i, _ in out.rejected) == sorted(bad)
        assert out.records == [i for i in range(len(samples)) if i not in bad]
        assert out.rows == [clean[i] for i in out.records]
        for index, reason in out.rejected:
            assert tail(reason).startswith(tail(bad[index]))
