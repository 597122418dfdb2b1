"""Schemathesis against a live platform: no server error, every answer documented.

The API's own OpenAPI document drives it (with an API key): generated valid and
invalid requests, the coverage phase, undeclared methods and stateful sequences
(create a test, read it, run it, stop the run, delete the test). Checked: no 5xx,
every status and content type the document declares, response schemas, a 405
naming the allowed methods, and that a missing/invalid key gets the 401 documented.

Not checked: positive_data_acceptance (the test definition has rules across fields,
e.g. a DTMF action needs digits, that JSON Schema cannot express, so schema-valid
bodies are rightly refused with 422) and negative_data_rejection (pydantic reads
"5" as 5 for a number field, on purpose: forms and YAML files send text).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from callmeter_common.procs import free_port, wait_for_port

pytestmark = pytest.mark.integration

KEY = "fuzz-key"


@pytest.fixture(scope="module")
def keyed_api(platform):  # type: ignore[no-untyped-def]
    port = free_port()
    platform.start_replica("api", "api-fuzz", CALLMETER_PORT=str(port), CALLMETER_API_KEYS=KEY)
    try:
        wait_for_port("127.0.0.1", port, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        platform.kill("api-fuzz")


def test_the_api_answers_every_generated_request_as_documented(keyed_api, tmp_path: Path):  # type: ignore[no-untyped-def]
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli), "run", f"{keyed_api}/openapi.json",
            "--header", f"Authorization: Bearer {KEY}",
            "--checks", "all",
            "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
            # The SSE streams stay open by design (follow=true); they are tested in
            # tests/integration/test_integrations.py.
            "--exclude-path-regex", "/events$",
            "--max-examples", "10",
            "--workers", "1",
            "--request-timeout", "20",
            "--seed", "20261201",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", out)
    print(out[-3000:])
    assert generated and int(generated.group(1)) >= 300, out[-3000:]
    assert result.returncode == 0, out[-6000:]
