"""The `callmeter` command."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from callmeter_common.settings import CommonSettings

app = typer.Typer(help="CallMeter: self-hosted SIP/VoIP load testing.", no_args_is_help=True)
projections = typer.Typer(help="Read-model maintenance.")
app.add_typer(projections, name="projections")


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where NATS and PostgreSQL keep data.")] = Path(
        ".callmeter"
    ),
    port: Annotated[int, typer.Option(help="Web UI / API port.")] = 8000,
) -> None:
    """Start NATS, PostgreSQL and the five services; Ctrl-C stops everything."""
    from .platform import Platform

    platform = Platform(
        data_dir.resolve(), os.environ.get("CALLMETER_NATS_URL", ""),
        os.environ.get("CALLMETER_DATABASE_URL", ""), port,
    )  # fmt: skip
    stop: list[bool] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        platform.start_servers()
        platform.start_services()
        platform.wait_for_api()
        platform.ensure_demo_test()
        typer.echo(f"CallMeter is up: http://127.0.0.1:{port}  (logs in {data_dir}/; Ctrl-C stops)")
        platform.supervise(stop)
    finally:
        typer.echo("stopping...")
        platform.stop()


@app.command()
def worker(
    region: str = typer.Option("default"),
    capacity: int = typer.Option(200),
    worker_id: str = typer.Option("", help="Defaults to host name and pid."),
) -> None:
    """Join a platform (CALLMETER_NATS_URL) as a worker."""
    os.environ["CALLMETER_REGION"] = region
    os.environ["CALLMETER_CAPACITY"] = str(capacity)
    if worker_id:
        os.environ["CALLMETER_WORKER_ID"] = worker_id
    from callmeter_worker.main import main

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


if __name__ == "__main__":
    app()
