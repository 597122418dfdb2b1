"""Every command README.md (and docs/, infra/) shows is run here, as written.

The inventory comes from the Markdown (tests/support/doc_commands.py): each shell
block command, inline command and `METHOD /path` request either matches one of
the handlers below, which runs it, or carries a `<!-- not-run ...: reason -->`
marker, and is then validated instead (the files and make targets it names
exist, YAML/JSON parse). A command that is neither fails
`test_every_documented_command_is_run_or_marked`, as does a handler or marker
that matches nothing any more.

`test_documented_commands_work` runs them against one platform it starts with
the README's own `make run` (in this checkout, with its own NATS and PostgreSQL
in a temporary data directory and the UI on a free port, through the variables
the README documents), started twice on the same data, stopped with Ctrl-C
(SIGINT to its process group) and checked to leave nothing running. Commands run with bash in the repository, the
venv's bin/ first on PATH; `localhost:8000` / `nats://127.0.0.1:4222` become the
platform's addresses (CALLMETER_API_URL / CALLMETER_NATS_URL for the CLI), and
placeholders (`<test>`, `<run>`, `RUN`, `test.yaml`...) are filled from earlier
commands' output. Handlers run by stage, then in document order.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml

import callmeter_events as ev
from callmeter_common.procs import free_port
from tests.support.doc_commands import Command, inventory, unused_markers
from tests.support.jobs import Job

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv make run installs into
# A short test for `callmeter run test.yaml --wait`: 2 s, one call, thresholds that hold.
TEST_YAML = {
    "name": "docs: ci gate",
    "duration_s": 2,
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
    ],
    "thresholds": ["call_success_rate == 100", "mos_avg >= 4.0"],
}


@dataclass
class Docs:
    """What the documented commands share: the platform's addresses and earlier output."""

    tmp: Path
    nats_url: str = ""  # the servers `make run` started, from its output
    database_url: str = ""
    port: int = field(default_factory=free_port)
    values: dict[str, str] = field(default_factory=dict)
    make_run: Job | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, servers: bool = True) -> dict[str, str]:
        """The commands' environment; `servers`: where the platform's NATS and
        PostgreSQL are (not for `make run`, which starts its own)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLMETER_", "MAKE"))}
        env |= {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "COLUMNS": "200",
            "CALLMETER_PORT": str(self.port),
            "CALLMETER_DATA_DIR": str(self.tmp / "data"),
            "CALLMETER_API_URL": self.base,
        }
        if "key" in self.values:  # the key `make run`'s administrator created
            env["CALLMETER_API_KEY"] = self.values["key"]
        if servers:
            env |= {
                "CALLMETER_NATS_URL": self.nats_url,
                "CALLMETER_DATABASE_URL": self.database_url,
            }
        return env

    def render(self, text: str) -> str:
        """The command as it runs here: our addresses, files and earlier ids."""
        text = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{self.port}", text)
        text = text.replace("nats://127.0.0.1:4222", self.nats_url)
        text = re.sub(r"(?<![\w/.])test\.yaml\b", str(self.tmp / "test.yaml"), text)

        def collection(m: re.Match[str]) -> str:
            kind, name = m[1], m[2]
            return f"{kind}/" + self.value(name if name in self.values else kind[:-1].upper())

        text = re.sub(r"\b(runs|tests)/[<{](\w+)[>}]", collection, text)
        text = re.sub(r"\b(RUN|TEST)\b", lambda m: self.value(m[1]), text)
        return re.sub(r"<(\w+)>|(?<!\$)\{(\w+)\}", lambda m: self.value(m[1] or m[2]), text)

    def value(self, name: str) -> str:
        if name not in self.values and name.lower() in self.values:
            name = name.lower()  # TEST: the test <test> named, until a command sets its own
        assert name in self.values, f"no earlier command gave a value for {name!r}"
        return self.values[name]

    def sh(
        self, text: str, timeout: float = 120, more: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run `text` (rendered) followed by `more` (as is)."""
        return subprocess.run(
            ["bash", "-c", self.render(text) + more],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def api(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        """With `key`, else the key the administrator created (none before)."""
        key = self.values.get("key", "") if key is None else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)

    def wait_run(self, run_id: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.api("GET", f"/api/v1/runs/{run_id}").json()
            if run["status"] in ("COMPLETED", "FAILED") and run.get("evaluation") is not None:
                return run
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} not finished after {timeout}s")


Handler = Callable[[Docs, Command], None]


@dataclass(frozen=True)
class Handles:
    pattern: re.Pattern[str]
    stage: int
    run: Handler


HANDLERS: list[Handles] = []


def handles(pattern: str, stage: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS.append(Handles(re.compile(pattern, re.S), stage, fn))
        return fn

    return register


def handlers_of(command: Command) -> list[Handles]:
    return [h for h in HANDLERS if h.pattern.fullmatch(command.text)]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# Stage 0: needs no platform.


@handles(r"python -m callmeter_events\.\w+ > docs/\S+", stage=0)
def generated_page(docs: Docs, command: Command) -> None:
    """The page (docs/metrics.md, docs/asyncapi.json) is what the command generates
    today: written elsewhere and compared."""
    page = re.search(r"> (\S+)", command.text)
    assert page
    out = docs.tmp / Path(page[1]).name
    ok(docs.sh(command.text.replace(page[0], f"> {out}")))
    assert out.read_text() == (ROOT / page[1]).read_text(), f"{page[1]} is stale: run it"


# Stage 1: the README's API-keys example, on a fresh platform.


def start_make_run(docs: Docs, command: Command) -> None:
    if docs.make_run is not None:
        docs.make_run.ctrl_c()
    log = docs.tmp / f"make-run-{len(list(docs.tmp.glob('make-run-*')))}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", docs.render(command.text)],
            cwd=ROOT,
            env=docs.env(servers=False),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    docs.make_run = Job(proc, log, docs.port, "make run")
    docs.make_run.wait_up()
    servers = re.search(
        r"NATS (nats://\S+).*?PostgreSQL (postgresql://\S+)", docs.make_run.output()
    )
    assert servers, docs.make_run.output()
    docs.nats_url, docs.database_url = servers[1], servers[2]
    # CALLMETER_DATA_DIR: the servers' data and the services' logs are there.
    data = {p.name for p in (docs.tmp / "data").iterdir()}
    assert {"nats", "pgdata", "scheduler.log", "api.log"} <= data, data


def demo_tests(docs: Docs, key: str | None = None) -> list[dict[str, Any]]:
    items = docs.api("GET", "/api/v1/tests", key).json()["items"]
    return [t for t in items if t["definition"]["name"].startswith("Demo:")]


@handles(r"CALLMETER_API_KEYS=(\S+) make run", stage=1)
def make_run_with_keys(docs: Docs, command: Command) -> None:
    start_make_run(docs, command)
    assignment = re.match(r"CALLMETER_API_KEYS=(\S+)", command.text)
    assert assignment
    keys = assignment[1].split(",")
    refused = docs.api("GET", "/api/v1/tests", "")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    every_project = next(k for k in keys if ":" not in k)
    # Created on first start with the key for every project: in no key's project.
    default = ev.TestDefinition.model_fields["project"].default
    assert [t["definition"]["project"] for t in demo_tests(docs, every_project)] == [default]
    page = httpx.get(docs.base + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"  # pages too
    assert docs.api("GET", "/", every_project).status_code == 200


@handles(r"curl .*", stage=3)
@handles(r"curl -H 'Authorization: Bearer \S+' .*", stage=1)
def curl(docs: Docs, command: Command) -> None:
    """Status and fields as the comment promises (`-> 201 {"id": "<test>"}`,
    `status, endpoints, summary`); without one, a 2xx JSON answer."""
    out = ok(docs.sh(command.text, more=" -sS -w '\\n%{http_code}'"))
    body_text, _, status = out.rpartition("\n")
    body = json.loads(body_text)
    promise = re.fullmatch(r"->\s*(\d{3})\s*(\{.*\})?", command.comment)
    if promise:
        assert int(status) == int(promise[1]), body
        for name, value in json.loads(promise[2] or "{}").items():
            assert name in body, body
            if isinstance(value, str) and (placeholder := re.fullmatch(r"<(\w+)>", value)):
                docs.values[placeholder[1]] = str(body[name])
    else:
        assert 200 <= int(status) < 300, body
        names = [n.strip() for n in command.comment.split(",") if n.strip()]
        assert all(re.fullmatch(r"\w+", n) for n in names), f"unclear promise: {command.comment}"
        assert all(n in body for n in names), (names, body)


# Stage 2: `make run` again: same data, no keys; every later command uses it.


@handles(r"make run", stage=2)
def make_run(docs: Docs, command: Command) -> None:
    start_make_run(docs, command)
    # No user yet: the output has the one link that creates the first administrator,
    # and until then the installation serves nothing.
    setup = re.search(
        r"first administrator at (http://\S+/setup\?token=(\S+))", docs.make_run.output()
    )
    assert setup, docs.make_run.output()
    page = httpx.get(docs.base + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 303 and page.headers["location"] == "/setup"
    assert docs.api("GET", "/api/v1/tests", "").status_code == 401
    assert httpx.get(setup[1], timeout=10).status_code == 200
    refused = httpx.post(
        docs.base + "/setup", data={"token": "guess", "username": "x", "password": "0123456789"}
    )
    assert refused.status_code == 403
    claim(docs, setup[2])
    assert len(demo_tests(docs)) == 1  # kept from the first start, not created twice


def claim(docs: Docs, token: str) -> None:
    """What the README tells a user: open the setup link and create the administrator,
    then create an API key on the organisation page (`<key>` of later commands)."""
    with httpx.Client(base_url=docs.base, timeout=30) as browser:
        admin = {"token": token, "username": "admin", "password": "docs-password-1"}
        assert browser.post("/setup", data=admin).status_code == 303
        page = browser.get("/orgs/default")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf, page.text
        form = {"op": "key", "project": "default", "role": "owner", "name": "docs"}
        made = browser.post("/orgs/default", data={**form, "csrf_token": csrf[1]})
        key = re.search(r'id="new-key".*?<code>(cmk_\w+)</code>', made.text, re.S)
        assert made.status_code == 201 and key, made.text
    docs.values["key"] = key[1]


@handles(r"export CALLMETER_API_KEY=<key>", stage=2)
def export_key(docs: Docs, command: Command) -> None:
    """The key the organisation page showed serves the API (the later commands'
    environment has it, as after this `export`)."""
    ok(docs.sh(command.text))
    me = docs.api("GET", "/api/v1/me")
    assert me.status_code == 200, me.text
    # Its own worker is online; the first start's one left when Ctrl-C stopped it.
    deadline = time.monotonic() + 20
    while (statuses := worker_statuses(docs)) != ["OFFLINE", "ONLINE"]:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.3)


def worker_statuses(docs: Docs) -> list[str]:
    return sorted(w["status"] for w in docs.api("GET", "/api/v1/workers").json()["items"])


@handles(r"callmeter up", stage=2)
def callmeter_up(docs: Docs, command: Command) -> None:
    """What `make run` runs, with 2 metrics-ingest processes and the other 4 services."""
    assert docs.make_run is not None
    lines = [" ".join(p.cmdline()) for p in docs.make_run.processes()]
    assert any(line.endswith("callmeter up") for line in lines), lines
    modules = [m for line in lines if (m := re.search(r"-m (callmeter_\w+)", line))]
    counts = {m[1]: sum(1 for n in modules if n[1] == m[1]) for m in modules}
    assert counts == {
        "callmeter_scheduler": 1,
        "callmeter_dispatcher": 1,
        "callmeter_worker": 1,
        "callmeter_ingest": 2,
        "callmeter_api": 1,
    }, counts


# Stage 4: a run for the commands that need a finished one.


@handles(r"callmeter run test\.yaml --wait", stage=4)
def callmeter_run(docs: Docs, command: Command) -> None:
    (docs.tmp / "test.yaml").write_text(yaml.safe_dump(TEST_YAML, sort_keys=False))
    out = ok(docs.sh(command.text, timeout=180))
    assert "Thresholds: PASSED" in out and "COMPLETED" in out, out
    started = re.search(r"test (\S+) run (\S+) started", out)
    assert started, out
    docs.values["RUN"] = started[2]
    docs.values["a"], docs.values["b"] = docs.values["run"], started[2]
    docs.wait_run(docs.values["run"])  # the README's curl run, for /compare


# Stage 5: commands on finished runs.


@handles(r"callmeter runs list", stage=5)
def runs_list(docs: Docs, command: Command) -> None:
    out = ok(docs.sh(command.text))
    assert docs.values["RUN"] in out and "COMPLETED" in out, out


@handles(r"callmeter probes list", stage=5)
def probes_list(docs: Docs, command: Command) -> None:
    out = ok(docs.sh(command.text))
    assert "health" in out and "target" in out, out  # the table (no probe saved here)


@handles(r"callmeter export RUN --format (\w+\|)*\w+", stage=5)
def export(docs: Docs, command: Command) -> None:
    stem, formats = command.text.rsplit(" ", 1)
    for fmt in formats.split("|"):
        out = docs.tmp / f"export.{fmt}"
        ok(docs.sh(f"{stem} {fmt} > {out}"))
        data = out.read_bytes()
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(data.decode())))
            assert rows and {r["run_id"] for r in rows} == {docs.values["RUN"]}
        elif fmt == "parquet":
            assert data[:4] == data[-4:] == b"PAR1"
        else:
            suite = ET.fromstring(data)
            assert suite.iter("testcase") and suite.get("failures") == "0", data


@handles(r"callmeter tests export TEST > test\.yaml", stage=5)
def saved_test_export(docs: Docs, command: Command) -> None:
    ok(docs.sh(command.text))
    saved = yaml.safe_load((docs.tmp / "test.yaml").read_text())
    test = docs.api("GET", f"/api/v1/tests/{docs.value('TEST')}").json()
    assert saved == test["definition"]


@handles(r"callmeter tests import test\.yaml", stage=5)
def saved_test_import(docs: Docs, command: Command) -> None:
    assert ok(docs.sh(command.text)).strip() == docs.value("TEST")  # updated by name


@handles(r"callmeter worker(?: --(?:region|capacity) \S+)*", stage=5)
@handles(r"python -m callmeter_worker", stage=5)
def worker(docs: Docs, command: Command) -> None:
    """Joins the platform (with the region and capacity asked, if any) and leaves it
    on Ctrl-C."""
    asked = dict(re.findall(r"--(region|capacity) (\S+)", command.text))
    before = {w["worker_id"] for w in docs.api("GET", "/api/v1/workers").json()["items"]}
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {docs.render(command.text)}"],
        cwd=ROOT,
        env=docs.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def joined() -> list[dict[str, Any]]:
            items = docs.api("GET", "/api/v1/workers").json()["items"]
            return [w for w in items if w["worker_id"] not in before]

        deadline = time.monotonic() + 60
        while not joined() and time.monotonic() < deadline:
            time.sleep(0.3)
        [new] = joined()
        assert new["status"] == "ONLINE", new
        assert {k: str(new[k]) for k in asked} == asked, new
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 15
        while joined()[0]["status"] == "ONLINE" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert joined()[0]["status"] == "OFFLINE"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@handles(r"callmeter replay RUN --speed \d+ --subject-prefix replay\.RUN", stage=5)
def replay(docs: Docs, command: Command) -> None:
    """Everything it says it republished arrives under the prefix."""
    prefix = re.search(r"--subject-prefix (\S+)", docs.render(command.text))
    assert prefix

    async def go() -> tuple[str, int]:
        nc = await nats.connect(docs.nats_url)
        got = 0

        async def count(_: Any) -> None:
            nonlocal got
            got += 1

        await nc.subscribe(f"{prefix[1]}.>", cb=count)
        await nc.flush()
        out = await asyncio.to_thread(lambda: ok(docs.sh(command.text)))
        await nc.flush()
        await asyncio.sleep(0.5)
        await nc.close()
        return out, got

    out, got = asyncio.run(go())
    said = re.search(r"replaying (\d+) messages to (\S+)\.>", out)
    assert said and said[2] == prefix[1], out
    assert got == int(said[1]) > 0


@handles(r"examples/\w+\.py", stage=5)
def example(docs: Docs, command: Command) -> None:
    """An example runs as its own docstring says (`python examples/x.py ARGS`)."""
    usage = re.search(
        rf"^\s*(python {re.escape(command.text)} .*)$", (ROOT / command.text).read_text(), re.M
    )
    assert usage, f"{command.text}: its docstring shows no `python {command.text} ...` line"
    out = ok(docs.sh(usage[1].replace("<run_id>", "RUN"), timeout=60))
    assert "RunCompleted" in out, out


@handles(r"(GET|POST|PUT|PATCH|DELETE) /\S+", stage=5)
def request(docs: Docs, command: Command) -> None:
    """A 2xx answer (for an event stream, its start); a listed endpoint gives `<ep>`."""
    method, path = docs.render(command.text).split(" ", 1)
    headers = {"Authorization": f"Bearer {docs.value('key')}"}
    with httpx.stream(method, docs.base + path, headers=headers, timeout=30) as resp:
        assert 200 <= resp.status_code < 300, (command.text, resp.status_code, resp.read())
        if "text/event-stream" in resp.headers["content-type"]:
            return
        body = json.loads(resp.read())
    items = body.get("items") if isinstance(body, dict) else None
    if items and "endpoint_id" in items[0]:
        docs.values.setdefault("ep", items[0]["endpoint_id"])


# Stage 6: read-model maintenance, once nothing is running.


@handles(r"callmeter projections rebuild", stage=6)
def rebuild(docs: Docs, command: Command) -> None:
    before = docs.api("GET", "/api/v1/tests").json()["items"]
    out = ok(docs.sh(command.text))
    assert re.search(r"read models rebuilt up to stream sequence [1-9]\d*", out), out
    assert docs.api("GET", "/api/v1/tests").json()["items"] == before


# The inventory.


def validate_not_run(command: Command) -> list[str]:
    """What can be checked of a command that does not run here: the make targets,
    pip extras, files and test modules it and its reason name exist; YAML and JSON
    files parse."""
    problems = []
    words = shlex.split(command.text)
    makefile = (ROOT / "Makefile").read_text()
    if words[0] == "make":
        problems += [
            f"no make target {t!r}"
            for t in words[1:]
            if not re.search(rf"^{re.escape(t)}:", makefile, re.M)
        ]
    if words[:2] == ["pip", "install"]:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        declared = extras.get("optional-dependencies", {})
        problems += [
            f"pyproject.toml has no extra {x!r}"
            for w in words
            if (m := re.fullmatch(r"\.\[([\w,-]+)\]", w))
            for x in m[1].split(",")
            if x not in declared
        ]
    paths = [w.split("=", 1)[-1] for w in words[1:] if not w.startswith("-") or "=" in w]
    paths += re.findall(r"\btests/[\w/]+\.py\b", command.not_run or "")
    for word in paths:
        if "/" not in word or "://" in word or word.startswith("/"):
            continue
        path = ROOT / word
        if not path.exists():
            problems.append(f"{word} does not exist")
            continue
        # e.g. `kubectl apply -f infra/k8s/`: every manifest in the directory
        for file in sorted(path.glob("*.y*ml")) if path.is_dir() else [path]:
            try:
                if file.suffix in (".yml", ".yaml"):
                    list(yaml.safe_load_all(file.read_text()))
                elif file.suffix == ".json":
                    json.loads(file.read_text())
            except (yaml.YAMLError, ValueError) as exc:
                problems.append(f"{file.relative_to(ROOT)} does not parse: {exc}")
    return [f"{command.where} `{command.text}`: {p}" for p in problems]


def test_every_documented_command_is_run_or_marked() -> None:
    commands, markers = inventory(ROOT)
    assert commands, "no command found in the Markdown"
    problems = []
    for c in commands:
        found = handlers_of(c)
        if c.not_run is None and not found:
            problems.append(
                f"{c.where} `{c.text}`: not run by {__name__} and not marked "
                "<!-- not-run: reason --> (see tests/support/doc_commands.py)"
            )
        elif c.not_run is None and len({h.run for h in found}) > 1:
            problems.append(f"{c.where} `{c.text}`: matched by several handlers")
        elif c.not_run is not None:
            problems += validate_not_run(c)
            if not c.not_run.split(" [")[0]:
                problems.append(f"{c.where} `{c.text}`: the not-run marker gives no reason")
    runnable = [c for c in commands if c.not_run is None]
    problems += [
        f"handler {h.run.__name__} ({h.pattern.pattern}) matches no documented command"
        for h in HANDLERS
        if not any(h.pattern.fullmatch(c.text) for c in runnable)
    ]
    problems += [
        f"{m.page}:{m.line}: not-run marker marks nothing"
        for m in unused_markers(commands, markers)
    ]
    assert not problems, "\n".join(problems)


def plan(commands: list[Command]) -> list[tuple[Handles, Command]]:
    """Each distinct command once (the first mention with a comment wins), by stage,
    then in document order."""
    first: dict[str, Command] = {}
    for c in commands:
        if c.not_run is None and (c.text not in first or (c.comment and not first[c.text].comment)):
            first[c.text] = c
    order = {c.text: i for i, c in reversed(list(enumerate(commands)))}
    steps = []
    for c in first.values():
        h = handlers_of(c)
        h.sort(key=lambda h: -len(h.pattern.pattern))  # the most specific one
        steps.append((h[0], c))
    return sorted(steps, key=lambda s: (s[0].stage, order[s[1].text]))


@pytest.fixture
def docs() -> Iterator[Docs]:
    """`make run` starts on a new machine: no servers, an empty data directory.

    Not under pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user that
    must reach its data, and pytest keeps /tmp/pytest-of-root at mode 0700."""
    if not shutil.which("curl"):
        pytest.skip("needs curl (Debian package curl; make test installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="callmeter-docs-"))
    d = Docs(tmp)
    try:
        yield d
    finally:
        if d.make_run is not None:
            d.make_run.kill()
        shutil.rmtree(tmp, ignore_errors=True)  # PostgreSQL's data is large


def test_documented_commands_work(docs: Docs) -> None:
    commands, _ = inventory(ROOT)
    steps = plan(commands)
    assert steps
    for handler, command in steps:
        try:
            handler.run(docs, command)
        except Exception as exc:
            raise AssertionError(
                f"{command.where} `{command.text}` ({handler.run.__name__})"
            ) from exc
    assert docs.make_run is not None
    docs.make_run.ctrl_c()
    docs.make_run = None
