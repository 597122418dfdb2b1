"""What integrations rely on: `callmeter run` for CI, thresholds, replay of a run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import psycopg
import pytest
import yaml

from callmeter_cli.replay import read_run, replay
from callmeter_common.bus import Bus
from callmeter_events import decode
from callmeter_events.metric_events import MetricBatch
from callmeter_projections import RunsProjection
from callmeter_storage.readmodels import doc
from tests.support.sse import read_sse

pytestmark = pytest.mark.integration

TEST = {
    "name": "ci-gate",
    "duration_s": 3,
    "groups": [
        {"name": "A", "endpoints": 2, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ],
}


def callmeter_run(platform, tmp_path, thresholds):  # type: ignore[no-untyped-def]
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump({**TEST, "thresholds": thresholds}))
    cmd = [
        sys.executable,
        "-m",
        "callmeter_cli.main",
        "run",
        str(path),
        "--wait",
        "--api",
        platform.base,
        "--api-key",
        platform.api_key,
        "--timeout",
        "120",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_callmeter_run_passes_when_thresholds_hold(platform, tmp_path):  # type: ignore[no-untyped-def]
    result = callmeter_run(platform, tmp_path, ["mos_avg >= 4.0", "call_success_rate == 100"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout and "COMPLETED" in result.stdout


def test_callmeter_run_exits_1_when_a_threshold_fails(platform, tmp_path):  # type: ignore[no-untyped-def]
    # Re-running the same file updates the test by name instead of creating a second one.
    # No group plays audio, so no call is scored: MOS-LQO is null and its gate not measured.
    result = callmeter_run(platform, tmp_path, ["mos_avg >= 4.9", "mos_lqo_avg >= 1"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "not measured" in result.stdout
    _, tests = platform.request("GET", "/api/v1/tests")
    assert sum(1 for t in tests["items"] if t["definition"]["name"] == "ci-gate") == 1
    # The evaluation is stored with the run and shown by the API.
    _, runs = platform.request("GET", "/api/v1/runs")
    latest = next(r for r in runs["items"] if r["definition"]["name"] == "ci-gate")
    _, run = platform.request("GET", f"/api/v1/runs/{latest['run_id']}")
    assert run["evaluation"]["passed"] is False
    assert run["evaluation"]["results"][0]["expression"] == "mos_avg >= 4.9"
    assert run["evaluation"]["metrics"]["mos_avg"] > 4.0
    unmeasured = run["evaluation"]["results"][1]
    assert unmeasured == {"expression": "mos_lqo_avg >= 1", "actual": None, "passed": False}
    assert run["evaluation"]["metrics"]["mos_lqo_avg"] is None
    assert run["summary"]["mos_lqo"] is None and run["summary"]["mos_lqo_scored"] == 0
    # The run page shows the verdict and each threshold.
    _, html = platform.get_html(f"/runs/{latest['run_id']}")
    assert 'id="thresholds-verdict"' in html and "FAIL" in html and "mos_avg &gt;= 4.9" in html
    assert "<td>not measured</td>" in html


def test_a_bad_test_file_is_refused_before_anything_is_sent(platform, tmp_path):  # type: ignore[no-untyped-def]
    result = callmeter_run(platform, tmp_path, ["mos_avg >>= 4"])
    assert result.returncode == 2
    assert "thresholds.0" in result.stdout


def test_replayed_events_rebuild_the_same_views(platform, nats_server, database_url):  # type: ignore[no-untyped-def]
    run_id = platform.run_test({**TEST, "name": "replayed", "duration_s": 2})
    platform.wait_status(run_id, {"COMPLETED"})
    # The run's last event is RunEvaluated, after its samples are stored: record the
    # log once it is there, or the read models hold an event the recording lacks.
    deadline = time.monotonic() + 30
    while platform.request("GET", f"/api/v1/runs/{run_id}")[1].get("evaluation") is None:
        assert time.monotonic() < deadline, "the run was never evaluated"
        time.sleep(0.2)

    async def replay_and_fold() -> tuple[RunsProjection, int]:
        bus = await Bus.connect(nats_server.url, "test-replay")
        projection, received = RunsProjection(), []
        done = asyncio.Event()
        recorded = await read_run(bus, run_id)

        async def on_msg(msg):  # type: ignore[no-untyped-def]
            received.append(msg)
            if len(received) == len(recorded):
                done.set()

        await bus.nc.subscribe(f"replay.{run_id}.>", cb=on_msg)
        await replay(bus, recorded, f"replay.{run_id}", speed=0)
        await asyncio.wait_for(done.wait(), 30)
        for i, msg in enumerate(received, 1):
            assert msg.subject.startswith(f"replay.{run_id}.callmeter.")
            event = decode(msg.data)
            if event.stream == "CALLMETER_EVENTS":
                projection.apply(i, event)
        await bus.close()
        # Workers publish samples in batches: count samples, not messages.
        samples = sum(
            len(e.samples) if isinstance(e := decode(m.data), MetricBatch) else 1
            for m in received
            if ".callmeter.metrics." in m.subject
        )
        return projection, samples

    projection, samples = asyncio.run(replay_and_fold())
    with psycopg.connect(database_url) as conn:
        run_doc = conn.execute("SELECT doc FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        ep_docs = dict(
            conn.execute(
                "SELECT endpoint_id, doc FROM endpoints WHERE run_id = %s", (run_id,)
            ).fetchall()
        )
        stored = conn.execute(
            "SELECT count(*) FROM metric_samples WHERE run_id = %s", (run_id,)
        ).fetchone()[0]
    # The run and endpoint views folded from the replay equal the original read models.
    assert doc(projection.runs[run_id]) == run_doc
    assert {k: doc(v) for k, v in projection.endpoints[run_id].items()} == ep_docs
    # And every stored sample was replayed too.
    assert samples == stored > 0


def test_sse_subscriber_resumes_without_gaps_or_duplicates(platform):  # type: ignore[no-untyped-def]
    import httpx

    run_id = platform.run_test({**TEST, "name": "sse", "duration_s": 4})
    url = f"{platform.base}/api/v1/runs/{run_id}/events"
    with httpx.Client(timeout=60, headers=platform.auth) as http:
        # Read the first few events, then drop the connection mid-run.
        with http.stream("GET", url) as first:
            part1 = read_sse(first, stop_after=5)
        # Reconnect with Last-Event-ID and follow to the end of the run.
        headers = {"Last-Event-ID": str(part1[-1][0])}
        with http.stream("GET", url, headers=headers) as second:
            part2 = read_sse(second, until_type="RunCompleted")
        platform.wait_status(run_id, {"COMPLETED"})
        # The whole history, read in one go without following.
        with http.stream("GET", url, params={"follow": "false"}) as whole:
            everything = read_sse(whole)
    got = part1 + part2
    assert [i for i, _ in got] == sorted({i for i, _ in got})  # no duplicates, in order
    upto = [f for f in everything if f[0] <= got[-1][0]]
    assert got == upto  # no gaps
    assert ("RunCompleted" in {t for _, t in got}) and len(got) > 20
    # Filters: only the finish of group B's endpoints.
    with (
        httpx.Client(timeout=60, headers=platform.auth) as http,
        http.stream(
            "GET", url, params={"follow": "false", "type": "EndpointFinished", "group": "B"}
        ) as filtered,
    ):
        only = read_sse(filtered)
    assert [t for _, t in only] == ["EndpointFinished"] * 2


def test_webhooks_are_signed_retried_and_logged(platform):  # type: ignore[no-untyped-def]
    """Two API replicas fold the same events; each status change is still sent once."""
    import hashlib
    import hmac
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from callmeter_common.procs import free_port, wait_for_port

    received: list[tuple[str, bytes, str]] = []
    failures_left = [1]  # the first delivery fails: the platform must retry it

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if failures_left[0] > 0:
                failures_left[0] -= 1
                self.send_response(500)
            else:
                received.append(
                    (self.headers["X-CallMeter-Event"], body, self.headers["X-CallMeter-Signature"])
                )
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    replica_port = free_port()
    platform.start_replica("api", "api-2", CALLMETER_PORT=str(replica_port))
    try:
        wait_for_port("127.0.0.1", replica_port, 60)
        hook = {"url": f"http://127.0.0.1:{server.server_port}/hook", "secret": "s3cret"}
        run_id = platform.run_test({**TEST, "name": "hooked", "duration_s": 2, "webhooks": [hook]})
        platform.wait_status(run_id, {"COMPLETED"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "RunEvaluated" not in {r[0] for r in received}:
            time.sleep(0.2)
        time.sleep(2)  # a second sender, if there were one, has had its chance
    finally:
        platform.kill("api-2")
        server.shutdown()
    kinds = [r[0] for r in received]
    assert {"RunQueued", "RunStarted", "RunCompleted", "RunEvaluated"} <= set(kinds)
    assert len(kinds) == len(set(kinds)), kinds  # each status change delivered once
    for _, body, sig in received:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(sig, expected)
        assert json.loads(body)["run_id"] == run_id
    _, log = platform.request("GET", f"/api/v1/runs/{run_id}/webhooks")
    failed = [d for d in log["items"] if not d["ok"]]
    assert len(failed) == 1 and failed[0]["status_code"] == 500
    retried = [d for d in log["items"] if d["event_type"] == failed[0]["event_type"] and d["ok"]]
    assert retried and retried[0]["attempt"] == 2
    # The run page shows the delivery log.
    _, html = platform.get_html(f"/runs/{run_id}")
    assert 'id="webhooks"' in html and "RunCompleted" in html


def test_replay_page_shows_the_run_as_it_was(platform):  # type: ignore[no-untyped-def]
    import re

    run_id = platform.run_test({**TEST, "name": "replay-ui", "duration_s": 3})
    platform.wait_status(run_id, {"COMPLETED"})
    platform.request("GET", f"/api/v1/runs/{run_id}")

    def status_at(at: float) -> str:
        code, html = platform.get_html(f"/runs/{run_id}/replay/frame?at={at}")
        assert code == 200, html
        return re.search(r'id="run-status"[^>]*>(\w+)<', html).group(1)

    # At the start it had just been created; in the middle endpoints were in call; at the end, done.
    assert status_at(0) == "PENDING"

    def in_call_at(at: float) -> int:
        _, html = platform.get_html(f"/runs/{run_id}/replay/frame?at={at}")
        return int(re.search(r'data-phase="INCALL">.*?<div class="v">(\d+)<', html, re.S).group(1))

    # Somewhere in the middle every call was up (scrub in half-second steps to find it).
    moments = [i / 2 for i in range(2, 40)]
    assert max(in_call_at(t) for t in moments) == 4
    assert any(status_at(t) == "RUNNING" for t in moments)
    assert status_at(3600) == "COMPLETED"
    # At the end the summary shows each direction, read from the rollups up to that moment.
    _, end = platform.get_html(f"/runs/{run_id}/replay/frame?at=3600")
    sides = re.search(
        r'data-sides="mos">send <span class="(\w+)">([\d.]+)</span> · recv '
        r'<span class="(\w+)">([\d.]+)<',
        end,
    )
    assert sides and sides.group(1) == sides.group(3) == "good", end
    assert float(sides.group(2)) > 4.0 and float(sides.group(4)) > 4.0
    code, page = platform.get_html(f"/runs/{run_id}/replay")
    assert code == 200 and 'type="range"' in page and "▶ 10×" in page


def test_group_options_and_scenarios_reach_the_endpoints(platform):  # type: ignore[no-untyped-def]
    import json

    import httpx

    definition = {
        "name": "scenario",
        "duration_s": 4,
        "groups": [
            {
                "name": "A",
                "endpoints": 1,
                "calls": "B",
                "scenario": [{"at_s": 1, "action": "dtmf", "digits": "159#", "method": "rfc4733"}],
            },
            {"name": "B", "endpoints": 1, "options": {"answer_delay_s": 0.3, "ring_time_s": 0.5}},
        ],
    }
    run_id = platform.run_test(definition)
    run = platform.wait_status(run_id, {"COMPLETED"})
    caller = next(e for e in run["endpoints"] if e["id"] == "A-1")
    # The receiver's answer delay and ring time show in the caller's setup time.
    assert caller["call_setup_ms"] >= 750, caller
    url = f"{platform.base}/api/v1/runs/{run_id}/events"
    params = {"follow": "false", "type": "DtmfReceived,ScenarioActionExecuted"}
    with httpx.Client(timeout=30, headers=platform.auth) as http:
        body = http.get(url, params=params).text
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    executed = [e for e in events if e["type"] == "ScenarioActionExecuted"]
    received = "".join(e["digits"] for e in events if e["type"] == "DtmfReceived")
    assert [(e["endpoint_id"], e["action"], e["ok"]) for e in executed] == [("A-1", "dtmf", True)]
    assert received == "159#"


def test_loss_in_one_direction_is_shown_per_direction_everywhere(platform, database_url, tmp_path):  # type: ignore[no-untyped-def]
    # A drops 5 % of what it sends to B; what B sends back arrives clean. The run must show
    # ~5 % for the send direction, ~0 % for recv, and 5 % as its headline (not 2.5 %).
    thresholds = ["loss_avg_pct >= 2", "loss_avg_pct_send >= 2", "loss_avg_pct_recv <= 0.5"]
    run_id = platform.run_test(
        {
            "name": "one-way loss",
            "duration_s": 6,
            "thresholds": thresholds,
            "groups": [
                {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B", "drop_tx_pct": 5},
                {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
            ],
        }
    )
    platform.wait_status(run_id, {"COMPLETED"})
    deadline = time.monotonic() + 60
    while (run := platform.request("GET", f"/api/v1/runs/{run_id}")[1])["evaluation"] is None:
        assert time.monotonic() < deadline, "the run was never evaluated"
        time.sleep(0.25)
    # Independently: packets lost over expected from the raw receive samples, per group.
    with psycopg.connect(database_url) as conn:
        raw = dict(
            conn.execute(
                "SELECT group_name, 100.0 * sum(packets_lost) / (sum(packets_lost) + sum(packets))"
                " FROM metric_samples WHERE run_id = %s AND direction = 'recv' GROUP BY 1",
                (run_id,),
            ).fetchall()
        )
        recv_samples = conn.execute(
            "SELECT count(*) FROM metric_samples WHERE run_id = %s AND direction = 'recv'",
            (run_id,),
        ).fetchone()[0]  # type: ignore[index]
    # Evaluated after ingest's watermark, which counted every receive sample stored.
    assert run["samples_stored"] == recv_samples == run["summary"]["samples"] > 0
    s = run["summary"]
    assert s["send"]["loss_pct"] == pytest.approx(float(raw["B"]))  # B receives what A sends
    assert s["recv"]["loss_pct"] == pytest.approx(float(raw["A"]))
    assert 2.5 <= s["send"]["loss_pct"] <= 7.5 and s["recv"]["loss_pct"] <= 0.5, s
    assert s["loss_pct"] == s["send"]["loss_pct"]  # the worse direction, never the average
    assert s["mos"] == s["send"]["mos"] < s["recv"]["mos"]
    # Thresholds are judged on the same figures the pages show.
    evaluation = run["evaluation"]
    assert evaluation["passed"] is True, evaluation
    m = evaluation["metrics"]
    assert m["loss_avg_pct"] == pytest.approx(s["loss_pct"])
    assert m["loss_avg_pct_send"] == pytest.approx(s["send"]["loss_pct"])
    assert m["loss_avg_pct_recv"] == pytest.approx(s["recv"]["loss_pct"])
    assert (m["mos_avg"], m["mos_p5"]) == (s["mos"], s["mos_p5"])
    # The results API: per direction, percentiles within what was seen.
    _, results = platform.request("GET", f"/api/v1/runs/{run_id}/results")
    assert 100 * results["directions"]["send"]["loss"]["fraction"] == pytest.approx(
        m["loss_avg_pct"]
    )
    assert results["groups"]["B"]["direction"] == "send"
    for direction in ("send", "recv"):
        for key in ("mos", "jitter_ms", "fraction_lost"):
            f = results["directions"][direction][key]
            assert all(f["min"] <= f[p] <= f["max"] for p in ("p50", "p95", "p99")), (key, f)
    # JUnit carries each direction too (compare: tests/unit/test_ui_pages.py).
    junit = subprocess.run(
        [
            sys.executable,
            "-m",
            "callmeter_cli.main",
            "export",
            run_id,
            "--format",
            "junit",
            "--api",
            platform.base,
            "--api-key",
            platform.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert float(props["loss_pct.send"]) == pytest.approx(s["send"]["loss_pct"], rel=1e-5)
    assert float(props["loss_pct"]) == pytest.approx(s["loss_pct"], rel=1e-5)
    _, html = platform.get_html(f"/runs/{run_id}?view=results")
    assert 'data-side="send"' in html and "send: caller → callee" in html
