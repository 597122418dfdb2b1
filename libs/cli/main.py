"""The `callmeter` command."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from callmeter_common.servers import (
    NATS_SYNC_DEFAULT,
    PG_SYNCHRONOUS_COMMIT_DEFAULT,
    check_nats_sync,
)
from callmeter_common.settings import CommonSettings

app = typer.Typer(help="CallMeter: self-hosted SIP/VoIP load testing.", no_args_is_help=True)
projections = typer.Typer(help="Read-model maintenance.")
app.add_typer(projections, name="projections")
runs = typer.Typer(help="Runs of the platform's tests.")
app.add_typer(runs, name="runs")
tests = typer.Typer(help="Test definitions as YAML files.")
app.add_typer(tests, name="tests")
secrets_cli = typer.Typer(help="The secret store (SIP passwords, webhook secrets).")
app.add_typer(secrets_cli, name="secrets")
users = typer.Typer(help="Users, for scripts (the UI manages members and API keys).")
app.add_typer(users, name="users")
probes = typer.Typer(help="Probes: a small check every interval, judged healthy or not.")
app.add_typer(probes, name="probes")

ApiUrl = Annotated[str | None, typer.Option("--api", help="API base URL (CALLMETER_API_URL).")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="Bearer key (CALLMETER_API_KEY).")]


@app.command()
def up(
    data_dir: Annotated[
        Path,
        typer.Option(envvar="CALLMETER_DATA_DIR", help="Where NATS, PostgreSQL and logs live."),
    ] = Path(".callmeter"),
    port: Annotated[int, typer.Option(envvar="CALLMETER_PORT", help="Web UI / API port.")] = 8000,
    ingest_processes: Annotated[
        int, typer.Option(min=1, help="metrics-ingest processes (they share the work).")
    ] = 2,
    nats_sync: Annotated[
        str,
        typer.Option(
            envvar="CALLMETER_NATS_SYNC",
            help="Embedded JetStream fsync: a duration (1s, 2m) or 'always' (every write).",
        ),
    ] = NATS_SYNC_DEFAULT,
    pg_synchronous_commit: Annotated[
        str,
        typer.Option(
            envvar="CALLMETER_PG_SYNCHRONOUS_COMMIT",
            help="Embedded PostgreSQL synchronous_commit: on (commits wait for disk) or off.",
        ),
    ] = PG_SYNCHRONOUS_COMMIT_DEFAULT,
    nats_nodes: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="NATS nodes: 3 starts a JetStream cluster on loopback, streams with 3 replicas.",
        ),
    ] = 1,
) -> None:
    """Start NATS, PostgreSQL and the five services, restart any that exits; Ctrl-C stops."""
    from callmeter_common.api_keys import parse_keys

    from .platform import Platform

    try:  # the API would refuse them too, after everything else had started
        parse_keys(os.environ.get("CALLMETER_API_KEYS", ""))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        check_nats_sync(nats_sync)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--nats-sync") from None
    if pg_synchronous_commit not in ("on", "off"):
        raise typer.BadParameter("expected on or off", param_hint="--pg-synchronous-commit")
    platform = Platform(
        data_dir.resolve(),
        os.environ.get("CALLMETER_NATS_URL", ""),
        os.environ.get("CALLMETER_DATABASE_URL", ""),
        port,
        ingest_processes=ingest_processes,
        nats_sync=nats_sync,
        pg_synchronous_commit=pg_synchronous_commit,
        nats_nodes=nats_nodes,
    )
    stop: list[bool] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        platform.start_servers()
        platform.start_services()
        platform.wait_for_api()
        project = platform.ensure_demo_test()
        if project:
            typer.echo(f"demo test created in project {project!r} (no key for every project)")
        typer.echo(f"CallMeter is up: http://127.0.0.1:{port}  (logs in {data_dir}/; Ctrl-C stops)")
        if setup := platform.setup_url():
            typer.echo(f"No user yet: create the first administrator at {setup}")
        platform.supervise(stop)
    finally:
        typer.echo("stopping...")
        platform.stop()


EMBEDDED_NATS_URL = "nats://127.0.0.1:4222"  # where `callmeter up` starts them by default
EMBEDDED_DATABASE_URL = "postgresql://postgres@127.0.0.1:5433/callmeter"
NatsUrl = Annotated[str, typer.Option(envvar="CALLMETER_NATS_URL")]
DatabaseUrl = Annotated[str, typer.Option(envvar="CALLMETER_DATABASE_URL")]
Password = Annotated[
    str,
    typer.Option(
        envvar="CALLMETER_PASSWORD",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="At least 10 characters; asked for when not given (CALLMETER_PASSWORD).",
    ),
]


@users.command("create")
def users_create(
    username: str,
    password: Password,
    org: Annotated[str, typer.Option(help="Organisation (created if new).")] = "default",
    role: Annotated[str, typer.Option(help="viewer, tester, editor, admin or owner.")] = "owner",
    nats_url: NatsUrl = EMBEDDED_NATS_URL,
) -> None:
    """Create a user, a member of ORG with ROLE (default: an Owner of the default
    organisation, i.e. an administrator of the installation)."""
    from callmeter_events import AccessRole

    from .users import UsersError, create

    try:
        create(nats_url, username, password, org, AccessRole(role))
    except (UsersError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"user {username!r} created: {role} of organisation {org!r}")


@users.command("reset-password")
def users_reset_password(
    username: str,
    password: Password,
    nats_url: NatsUrl = EMBEDDED_NATS_URL,
    database_url: DatabaseUrl = EMBEDDED_DATABASE_URL,
) -> None:
    """Set a user's password; every session of the user ends."""
    from .users import UsersError, reset_password

    try:
        reset_password(nats_url, database_url, username, password)
    except (UsersError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"password of {username!r} changed; their sessions ended")


@app.command()
def backup(
    directory: Annotated[Path, typer.Argument(help="A new or empty directory.")],
    nats_url: Annotated[str, typer.Option(envvar="CALLMETER_NATS_URL")] = EMBEDDED_NATS_URL,
    database_url: Annotated[
        str, typer.Option(envvar="CALLMETER_DATABASE_URL")
    ] = EMBEDDED_DATABASE_URL,
) -> None:
    """Back up a running platform: JetStream stream snapshots, a database dump, a manifest."""
    from .backup import BackupError
    from .backup import backup as do_backup
    from .snapshots import SnapshotError

    try:
        manifest = do_backup(directory, nats_url, database_url)
    except (BackupError, SnapshotError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    streams = manifest["streams"]
    messages = sum(s["state"]["messages"] for s in streams)
    typer.echo(
        f"backed up {len(streams)} streams ({messages} messages) and the database"
        f" ({manifest['database']['bytes']} bytes) to {directory}"
    )


@app.command()
def restore(
    directory: Annotated[Path, typer.Argument(help="A directory `callmeter backup` wrote.")],
    data_dir: Annotated[Path, typer.Option(help="A new or empty data directory.")] = Path(
        ".callmeter"
    ),
) -> None:
    """Restore a backup into an empty data directory; then `callmeter up --data-dir` it."""
    from .backup import BackupError
    from .backup import restore as do_restore
    from .snapshots import SnapshotError

    try:
        manifest = do_restore(directory, data_dir.resolve())
    except (BackupError, SnapshotError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"restored {len(manifest['streams'])} streams and the database from"
        f" {manifest['created_at']} into {data_dir}; start it: callmeter up"
        f" --data-dir {data_dir}"
    )


@app.command()
def worker(
    region: str = typer.Option("default"),
    capacity: int = typer.Option(200),
    worker_id: str = typer.Option("", help="Defaults to host name and pid."),
    advertise_address: str = typer.Option(
        "",
        help="IP address peers reach this worker's SIP and RTP at"
        " (CALLMETER_ADVERTISE_ADDRESS); default: the address of the route to NATS.",
    ),
    bind_address: str = typer.Option(
        "",
        help="Local IP address its SIP and RTP bind (CALLMETER_BIND_ADDRESS), e.g. 0.0.0.0 or"
        " a private address behind a port-forwarding NAT; default: the advertised address.",
    ),
    simulate: bool = typer.Option(
        False, help="Simulated endpoints (no pjsua2, no calls): loads the control plane only."
    ),
) -> None:
    """Join a platform (CALLMETER_NATS_URL) as a worker."""
    os.environ["CALLMETER_REGION"] = region
    os.environ["CALLMETER_CAPACITY"] = str(capacity)
    if worker_id:
        os.environ["CALLMETER_WORKER_ID"] = worker_id
    if advertise_address:
        os.environ["CALLMETER_ADVERTISE_ADDRESS"] = advertise_address
    if bind_address:
        os.environ["CALLMETER_BIND_ADDRESS"] = bind_address
    if simulate:
        os.environ["CALLMETER_SIMULATE"] = "1"
    from callmeter_worker.supervisor.main import main

    main()


@app.command()
def service(name: str) -> None:
    """Run one service in the foreground (scheduler, dispatcher, worker, metrics-ingest, api)."""
    import importlib

    from .platform import MODULES

    importlib.import_module(MODULES[name] + ".main").main()


@projections.command("rebuild")
def rebuild_cmd() -> None:
    """Drop the read models and rebuild them from CALLMETER_EVENTS."""
    from .rebuild import rebuild

    settings = CommonSettings()
    position = rebuild(settings.nats_url, settings.database_url)
    typer.echo(f"read models rebuilt up to stream sequence {position}")


@app.command("run")
def run_command(
    test_file: Annotated[Path, typer.Argument(help="Test definition (YAML or JSON).")],
    wait: Annotated[bool, typer.Option(help="Follow the run and print a summary.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 3600,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create or update the test from a file, run it; with --wait exit 1 if a threshold fails."""
    from rich.console import Console

    from .client import ApiError, Client
    from .run_cmd import run_test

    console = Console()
    try:
        code = run_test(test_file, wait, Client(api, api_key), console, timeout)
    except (ApiError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@runs.command("list")
def runs_list(
    test: Annotated[str | None, typer.Option(help="Only runs of this test id.")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """The most recent runs with their status."""
    from rich.console import Console
    from rich.table import Table

    from .client import Client

    items = Client(api, api_key).call("GET", "/runs", **({"test_id": test} if test else {}))[
        "items"
    ]
    table = Table("run", "test", "name", "status", "created")
    for r in items:
        table.add_row(
            r["run_id"], r["test_id"], r["definition"]["name"], r["status"], r["created_at"]
        )
    Console().print(table)


@probes.command("list")
def probes_list(api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Every probe you may see, with its current health."""
    from rich.console import Console

    from .client import Client
    from .probes_cmd import probes_table

    Console().print(probes_table(Client(api, api_key).call("GET", "/probes")["items"]))


@probes.command("create")
def probes_create(
    name: Annotated[str, typer.Option(help="The probe's name (unique in its project).")],
    test: Annotated[str | None, typer.Option(help="Probe this saved test (its id).")] = None,
    target: Annotated[
        Path | None,
        typer.Option(
            help="Or probe this small test file (YAML/JSON: one call, or a registration)."
        ),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between executions (>= 30).")] = 60,
    project: Annotated[str | None, typer.Option(help="Project (default: the key's).")] = None,
    confirm: Annotated[int, typer.Option(help="Executions in a row before health changes.")] = 1,
    degraded: Annotated[
        list[str] | None, typer.Option(help="Condition that must hold, else Degraded (repeat).")
    ] = None,
    unhealthy: Annotated[
        list[str] | None, typer.Option(help="Condition that must hold, else Unhealthy (repeat).")
    ] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Save a probe; prints its id."""
    from .client import ApiError, Client
    from .probes_cmd import probe_body

    body = probe_body(name, project, interval, test, target, confirm, degraded, unhealthy)
    try:
        typer.echo(Client(api, api_key).call("POST", "/probes", body)["id"])
    except ApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@probes.command("show")
def probes_show(
    probe_id: str,
    limit: Annotated[int, typer.Option(help="Executions shown, newest first.")] = 20,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """A probe's health and recent executions; exits 0 healthy, 1 degraded, 2 unhealthy,
    3 not judged yet (like a monitoring plugin)."""
    from rich.console import Console

    from .client import Client
    from .probes_cmd import EXIT_CODES, history_table

    client = Client(api, api_key)
    probe = client.call("GET", f"/probes/{probe_id}")
    items = client.call("GET", f"/probes/{probe_id}/history", limit=limit)["items"]
    Console().print(history_table(probe, items))
    raise typer.Exit(EXIT_CODES.get(probe["health"], 3))


@probes.command("delete")
def probes_delete(probe_id: str, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Delete a probe, its history and its secrets."""
    from .client import Client

    Client(api, api_key).call("DELETE", f"/probes/{probe_id}")


@app.command()
def export(
    run_id: str,
    format: Annotated[str, typer.Option(help="csv, parquet or junit")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", help="File (default: stdout).")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Export a run: its samples (csv, parquet) or a JUnit report of thresholds and endpoints."""
    import sys

    from .client import Client
    from .junit import junit_xml

    client = Client(api, api_key)
    if format == "junit":
        data: bytes = junit_xml(client.call("GET", f"/runs/{run_id}")).encode()
    elif format in ("csv", "parquet"):
        data = client.call("GET", f"/runs/{run_id}/samples", format=format)
    else:
        raise typer.BadParameter("format must be csv, parquet or junit")
    if output:
        output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)


@tests.command("export")
def tests_export(test_id: str, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Print a saved test as YAML (edit it, then `callmeter tests import` or `callmeter run`)."""
    import yaml

    from .client import Client

    test = Client(api, api_key).call("GET", f"/tests/{test_id}")
    typer.echo(yaml.safe_dump(test["definition"], sort_keys=False))


@tests.command("import")
def tests_import(test_file: Path, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Create (or update, matched by name) a test from a YAML file."""
    from .client import Client
    from .run_cmd import load_definition

    typer.echo(Client(api, api_key).save_test(load_definition(test_file)))


@app.command()
def replay(
    run_id: str,
    speed: Annotated[
        float, typer.Option(help="1 = real time, 10 = ten times faster, 0 = max.")
    ] = 1.0,
    subject_prefix: Annotated[str | None, typer.Option(help="Default: replay.<run id>")] = None,
    samples: Annotated[bool, typer.Option(help="Replay metric samples too.")] = True,
) -> None:
    """Republish a finished run's events under a replay prefix (the original is untouched)."""
    import asyncio

    from callmeter_common.bus import Bus

    from .replay import read_run
    from .replay import replay as do_replay

    prefix = subject_prefix or f"replay.{run_id}"

    async def go() -> None:
        bus = await Bus.connect(CommonSettings().nats_url, "replay")
        try:
            recorded = await read_run(bus, run_id, samples)
            if not recorded:
                typer.echo(f"no stored events for run {run_id}")
                raise typer.Exit(1)
            typer.echo(
                f"replaying {len(recorded)} messages to {prefix}.> at speed {speed or 'max'}"
            )
            took = await do_replay(bus, recorded, prefix, speed)
            typer.echo(f"done in {took:.2f} s")
        finally:
            await bus.close()

    asyncio.run(go())


@secrets_cli.command("purge-clear")
def secrets_purge_clear(
    apply: Annotated[bool, typer.Option(help="Purge; without it, only report.")] = False,
) -> None:
    """Find events written before the secret store that hold secrets in clear; purge the
    old TestSaved messages of tests saved again since (or deleted)."""
    import asyncio

    from callmeter_common.bus import Bus

    from .purge_secrets import find, purge

    async def go() -> int:
        bus = await Bus.connect(CommonSettings().nats_url, "purge-secrets")
        try:
            found = await find(bus.js)
            purged = await purge(bus.js, found) if apply else []
        finally:
            await bus.close()
        for test_id, purgeable in sorted(found.tests.items()):
            if test_id in purged:
                typer.echo(f"test {test_id}: old versions purged")
            elif purgeable:
                typer.echo(f"test {test_id}: old versions hold secrets; --apply purges them")
            else:
                typer.echo(f"test {test_id}: save it again with its passwords, then rerun this")
        for run_id in sorted(found.runs):
            typer.echo(f"run {run_id}: holds secrets; delete it (DELETE /api/v1/runs/{run_id})")
        left = len(found.runs) + sum(1 for t in found.tests if t not in purged)
        typer.echo(f"{left} tests and runs still hold secrets in clear")
        return left

    raise typer.Exit(1 if asyncio.run(go()) else 0)


if __name__ == "__main__":
    app()
