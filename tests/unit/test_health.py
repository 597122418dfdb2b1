"""/readyz's verdict from its checks, and the lag bounds (pure)."""

from __future__ import annotations

from callmeter_api.health import Check, lag_check, readiness
from callmeter_api.pages import size


def test_ready_only_when_every_check_passes() -> None:
    good = [Check("nats", True, "ok"), Check("postgres", True, "SELECT 1 answered")]
    assert readiness(good) == (
        200,
        {
            "status": "ready",
            "checks": [
                {"name": "nats", "ok": True, "detail": "ok"},
                {"name": "postgres", "ok": True, "detail": "SELECT 1 answered"},
            ],
        },
    )
    code, body = readiness([*good, Check("ingest_lag", False, "30000 messages behind")])
    assert code == 503 and body["status"] == "not_ready"
    assert body["checks"][2] == {
        "name": "ingest_lag",
        "ok": False,
        "detail": "30000 messages behind",
    }


def test_lag_within_the_limit_passes_beyond_fails_unknown_fails() -> None:
    assert lag_check("ingest_lag", 100, 100, "messages") == Check(
        "ingest_lag", True, "100 messages behind (limit 100)"
    )
    assert not lag_check("ingest_lag", 101, 100, "messages").ok
    unknown = lag_check("projection_lag", None, 100, "events")
    assert not unknown.ok and unknown.detail == "unknown (NATS unreachable)"


def test_sizes_read_as_people_read_them() -> None:
    assert [size(n) for n in (0, 999, 1000, 3_400_000, 12_300_000_000, None)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "3.4 MB",
        "12.3 GB",
        "—",
    ]


def test_disk_check_names_the_full_disk_and_passes_without_local_data(tmp_path) -> None:
    from callmeter_api.health import disk_check

    assert disk_check(tmp_path, 1).ok  # nothing there: not this API's concern
    (tmp_path / "nats").mkdir()
    ok = disk_check(tmp_path, 1)
    assert ok.ok and ok.detail.startswith(f"NATS store {tmp_path / 'nats'}: ")
    full = disk_check(tmp_path, 1e12)  # more than any disk has free
    assert not full.ok and full.detail.startswith("disk full: NATS store ")
    assert full.detail.endswith("(minimum 1e+12 MB)")
