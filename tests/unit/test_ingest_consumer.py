"""When ingest writes what it has decoded: pure, no servers."""

from __future__ import annotations

from callmeter_ingest.consumer import write_due


def test_a_write_waits_for_rows_or_time_while_messages_keep_coming() -> None:
    assert not write_due(1_000, 0.1, quiet=False, min_rows=5_000, linger_s=0.25)
    assert write_due(5_000, 0.0, quiet=False, min_rows=5_000, linger_s=0.25)
    assert write_due(1, 0.25, quiet=False, min_rows=5_000, linger_s=0.25)


def test_a_quiet_stream_is_written_at_once() -> None:
    assert write_due(500, 0.0, quiet=True, min_rows=5_000, linger_s=0.25)
    # Messages whose samples were all dead-lettered still need their acks.
    assert write_due(0, 0.0, quiet=True, min_rows=5_000, linger_s=0.25)
