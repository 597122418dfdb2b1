"""The FastAPI application: lifespan wiring of bus, pool and projector; routers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool

from callmeter_common import crypto
from callmeter_common.api_keys import parse_keys
from callmeter_common.bus import Bus
from callmeter_events import TERMINAL_STATUSES
from callmeter_storage.migrations import migrate
from callmeter_storage.readmodels import RUNS

from . import (
    access_routes,
    api_routes,
    audio_routes,
    auth,
    calls_routes,
    credentials,
    errors,
    events_routes,
    health_routes,
    html_access,
    html_probes,
    html_routes,
    probe_routes,
    queries,
    resource_routes,
    results_routes,
)
from .access import Access
from .authz import Role, require
from .capacity_judge import CapacityJudge
from .deps import Platform
from .evaluator import Evaluator
from .html_runs import RUN_PAGE_QUERY
from .live import LiveRuns
from .probe_runner import ProbeRunner
from .projector import Projector
from .settings import ApiSettings
from .webhooks import Webhooks


def live_runs(settings: ApiSettings, pool: ConnectionPool, projector: Projector) -> LiveRuns:
    """Live run pages: one read of a watched run per change, shared by its pages."""

    def read(run_id: str) -> Any:
        with pool.connection() as conn:
            return queries.run_page(conn, run_id, RUN_PAGE_QUERY)

    return LiveRuns(
        load=lambda run_id: asyncio.to_thread(read, run_id),
        visible=lambda seq, timeout: projector.wait_for_position(RUNS, seq, timeout),
        is_live=lambda found: found[0]["status"] not in TERMINAL_STATUSES,
        interval_s=settings.sse_interval_s,
        refresh_s=settings.live_refresh_s,
    )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings.database_url)
        bus = await Bus.connect(settings.nats_url, "api")
        await bus.ensure_streams()
        # Checked before each use: after a PostgreSQL restart no broken connection is handed out.
        pool = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=10,
            open=True,
            check=ConnectionPool.check_connection,
        )
        master = crypto.master_key(settings.secret_key, settings.data_dir)
        access = Access(bus)
        await access.start()
        projector = Projector(bus, settings.database_url)
        evaluator = Evaluator(bus, settings.database_url, projector.models.runs)
        capacity = CapacityJudge(bus, settings.database_url, projector.models.runs)
        webhooks = Webhooks(
            settings.database_url, projector.models.runs, settings.webhook_secret, master
        )
        projector.listeners.append(lambda _, event: evaluator.observe(event))
        projector.listeners.append(lambda _, event: webhooks.observe(event))
        live = live_runs(settings, pool, projector)
        projector.listeners.append(live.observe)
        await projector.start()
        evaluator.resume()  # runs read back unjudged from the read models
        stop = asyncio.Event()
        tasks = [
            *projector.tasks(stop),
            asyncio.create_task(evaluator.run(stop)),
            asyncio.create_task(capacity.run(stop)),
            asyncio.create_task(webhooks.run(stop)),
        ]
        app.state.platform = platform = Platform(
            settings, bus, pool, projector, live, master, access
        )
        await credentials.serve(platform)
        probe_runner = ProbeRunner(platform)
        await probe_runner.start()
        projector.listeners.append(lambda _, event: probe_runner.observe(event))
        tasks.append(asyncio.create_task(probe_runner.run(stop)))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await bus.close()
            pool.close()

    # Every state-changing request of a browser session carries its CSRF token.
    app = FastAPI(
        title="CallMeter",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(auth.check_csrf)],
    )
    errors.install(app)
    api_keys = parse_keys(settings.api_keys)
    auth.install(app, api_keys)
    auth.document(app)
    app.add_middleware(errors.BodyLimit, limit=settings.max_body_bytes)

    @app.middleware("http")
    async def html_errors(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        wants_html = "text/html" in request.headers.get("accept", "")
        is_page = not request.url.path.startswith(("/api/", "/static/", "/docs", "/openapi"))
        # Only JSON errors become an error page: a page that answers 422 itself (the
        # editor with its messages beside the fields) is already what the user needs.
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if response.status_code >= 400 and wants_html and is_page and is_json:
            body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
            import json

            try:
                message = json.loads(body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = body.decode(errors="replace")
            return html_routes.error_page(request, response.status_code, message)
        return response

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # Every router: reading needs the Viewer role in the project of the run or test the
    # path names (another organisation's is a 404); routes that change something
    # require more themselves (authz.require).
    viewer = [Depends(require(Role.VIEWER))]
    guarded = (
        api_routes.router,
        events_routes.router,
        results_routes.router,
        calls_routes.router,
        health_routes.api,
        audio_routes.router,
        resource_routes.router,
        probe_routes.router,
    )
    for router in guarded:
        app.include_router(router, dependencies=viewer)
    app.include_router(access_routes.router)  # checks per organisation (accounts.py)
    app.include_router(health_routes.probes)
    app.include_router(health_routes.pages, dependencies=viewer)
    app.include_router(events_routes.docs_router)
    app.include_router(html_access.router)  # login, setup, account, organisations
    app.include_router(html_probes.public)  # the opted-in status pages: no login
    app.include_router(html_probes.router, dependencies=viewer)
    app.include_router(html_routes.router, dependencies=viewer)
    return app
