"""Custom audio and PESQ through the whole platform: upload a WAV, run a test whose caller
plays it, read MOS-LQO beside the E-model MOS from the results API, CSV and run page."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
import xml.etree.ElementTree as ET

import pytest

from callmeter_common import wav
from callmeter_worker.supervisor.speech import at_rate

pytestmark = pytest.mark.integration


def _upload(platform, data: bytes) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    req = urllib.request.Request(
        platform.base + "/api/v1/audio",
        data,
        {"Content-Type": "audio/wav", **platform.auth},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _speech_8k() -> bytes:
    pcm, rate = wav.read_pcm(wav.BUILTIN["speech-en"])
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(at_rate(pcm, rate, 8000))
    return buf.getvalue()


def test_bad_uploads_and_unknown_references_name_the_field(platform):  # type: ignore[no-untyped-def]
    pcm, _ = wav.read_pcm(wav.BUILTIN["speech-en"])
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm[: 16000 * 4])
    status, body = _upload(platform, buf.getvalue())
    assert status == 422 and body["error"]["field"] == "channels", body
    status, body = _upload(platform, b"x" * (wav.MAX_BYTES + 10))
    assert status == 413 and body["error"]["field"] == "size", body
    missing = "sha256:" + "0" * 64
    test = {
        "name": "no audio",
        "duration_s": 5,
        "groups": [
            {"name": "A", "endpoints": 1, "calls": "B", "audio": missing},
            {"name": "B", "endpoints": 1},
        ],
    }
    status, body = platform.request("POST", "/api/v1/tests", test)
    assert status == 422 and body["error"]["field"] == "groups.0.audio", body
    status, body = platform.request("GET", f"/api/v1/audio/{missing}")
    assert status == 404


def test_uploaded_speech_is_played_recorded_and_scored(platform):  # type: ignore[no-untyped-def]
    data = _speech_8k()
    status, audio = _upload(platform, data)
    assert status == 201, audio
    assert audio["audio"] == wav.ref_of(data) and audio["clock_rate"] == 8000
    assert _upload(platform, data)[1]["audio"] == audio["audio"]  # same file, same reference
    test = {
        "name": "speech",
        "duration_s": 8,
        "speech_quality_calls": 1,
        "thresholds": ["mos_lqo_avg >= 3.5", "mos_lqo_min >= 3.5"],
        "groups": [
            {"name": "A", "endpoints": 2, "calls": "B", "audio": audio["audio"]},
            {"name": "B", "endpoints": 2},
        ],
    }
    run_id = platform.run_test(test)
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run

    status, results = platform.request("GET", f"/api/v1/runs/{run_id}/results")
    sq = results["speech_quality"]
    assert (sq["sampled"], sq["scored"]) == (1, 1), sq  # speech_quality_calls: 1 of 2 calls
    [b1] = sq["endpoints"]
    assert b1["endpoint_id"] == "B-1" and b1["codec"] == "PCMU" and b1["mode"] == "nb"
    # a clean loopback G.711 call (the host-level test checks the scale and the loss slope)
    assert 3.5 <= b1["mos_lqo"] <= 4.55 and b1["error"] is None, b1
    assert b1["mos_emodel"] > 4.0 and sq["mos_lqo_avg"] == b1["mos_lqo"]

    req = urllib.request.Request(
        platform.base + f"/api/v1/runs/{run_id}/speech_quality?format=csv", headers=platform.auth
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        rows = list(csv.DictReader(io.StringIO(resp.read().decode())))
    assert [(r["endpoint_id"], float(r["mos_lqo"])) for r in rows] == [("B-1", b1["mos_lqo"])]

    status, html = platform.get_html(f"/runs/{run_id}")
    assert status == 200 and 'id="speech-quality"' in html and "PESQ MOS-LQO" in html

    # thresholds, the run's summary (compare, CLI) and JUnit judge the same score
    deadline = time.monotonic() + 60
    while (run := platform.request("GET", f"/api/v1/runs/{run_id}")[1])["evaluation"] is None:
        assert time.monotonic() < deadline, "the run was never evaluated"
        time.sleep(0.25)
    evaluation = run["evaluation"]
    assert evaluation["passed"] is True, evaluation
    assert evaluation["metrics"]["mos_lqo_avg"] == evaluation["metrics"]["mos_lqo_min"]
    assert evaluation["metrics"]["mos_lqo_avg"] == pytest.approx(b1["mos_lqo"])
    summary = run["summary"]
    assert (summary["mos_lqo"], summary["mos_lqo_scored"]) == (b1["mos_lqo"], 1)
    junit = subprocess.run(
        [sys.executable, "-m", "callmeter_cli.main", "export", run_id, "--format", "junit"]
        + ["--api", platform.base, "--api-key", platform.api_key],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    root = ET.fromstring(junit)
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert float(props["mos_lqo"]) == pytest.approx(b1["mos_lqo"], rel=1e-5)
    cases = {
        c.get("name"): list(c) for c in root.iter("testcase") if c.get("classname") == "thresholds"
    }
    assert cases == {"mos_lqo_avg >= 3.5": [], "mos_lqo_min >= 3.5": []}

    # per endpoint: on its view (published before its EndpointFinished, or the read model
    # would have ignored it as late) and in its timeline
    _, detail = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/B-1")
    assert detail["me"]["endpoint"]["mos_lqo"] == b1["mos_lqo"]
    labels = [e["label"] for e in detail["me"]["timeline"] if e["kind"] == "event"]
    assert f"PESQ MOS-LQO {b1['mos_lqo']:.2f} (nb)" in labels, labels
    status, html = platform.get_html(f"/runs/{run_id}/endpoints/B-1")
    assert status == 200 and "MOS-LQO" in html
