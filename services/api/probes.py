"""Probes as a project resource: saved, read and deleted with the project check;
a project's webhooks and its public status page (Admin to change).

A probe's target is a saved test of its project (`test_id`: each execution runs
the test as it is then) or a small inline `definition` (one call between two
endpoints, or a registration only), whose passwords go to the secret store
(owner `test:<probe id>`, the test-secret path every run already resolves).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from callmeter_events import AccessRole, TestDefinition
from callmeter_events.testdef import Webhook
from callmeter_storage import named, results, secrets
from callmeter_storage import probes as rows
from callmeter_storage.resources import new_id

from . import probe_core, secret_store, service
from .deps import Platform
from .errors import ApiError
from .principal import Principal
from .resources import (
    EDITOR,
    VIEWER,
    Name,
    Project,
    check_references,
    own_project,
    query,
    visible,
)

ADMIN = AccessRole.ADMIN


class ProbeThresholds(BaseModel):
    """Conditions that must hold, in the language of a test's thresholds. An execution
    is Unhealthy when an `unhealthy` one fails, else Degraded when a `degraded` one
    fails, else Healthy. None: the defaults for what the target does
    (probe_core.default_conditions)."""

    model_config = ConfigDict(extra="forbid")

    degraded: list[str] | None = Field(default=None, max_length=20)
    unhealthy: list[str] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _parse(self) -> ProbeThresholds:
        for name in ("degraded", "unhealthy"):
            probe_core.check_conditions(getattr(self, name) or [], name)
        return self


class ProbeIn(BaseModel):
    """A probe as saved: what to check (`test_id` or `definition`), how often
    (`interval_s`, at least 30 s) and how to judge it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Name
    project: str = Project
    interval_s: float = Field(default=60.0, gt=0, le=86_400)
    test_id: str | None = Field(default=None, min_length=1, max_length=64)
    definition: TestDefinition | None = None
    thresholds: ProbeThresholds = Field(default_factory=ProbeThresholds)
    # Health changes after this many judged executions in a row agree (flap damping).
    confirm: int = Field(default=1, ge=1, le=10)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> ProbeIn:
        if (self.test_id is None) == (self.definition is None):
            raise ValueError("test_id: give either a test_id or a definition (one of them)")
        return self


def _invalid(exc: ValueError) -> ApiError:
    message = str(exc)
    return ApiError(422, "validation_error", message, message.split(":", 1)[0])


async def target(p: Platform, probe: dict[str, Any]) -> TestDefinition | None:
    """What an execution runs: the referenced test as saved now (None: deleted),
    or the inline definition."""
    if probe.get("test_id"):
        row = await query(p, results.test_row, probe["test_id"])
        if row is None or row["definition"]["project"] != probe["project"]:
            return None
        return TestDefinition.model_validate(row["definition"])
    return TestDefinition.model_validate(probe["definition"])


async def probe(
    p: Platform, scope: Principal, probe_id: str, role: AccessRole = VIEWER
) -> dict[str, Any]:
    """The probe, 404 unless the caller sees its project, 403 below `role` there."""
    found = await query(p, rows.get_probe, probe_id)
    return visible(scope, found, f"no probe {probe_id!r}", "probe_id", role)


def view(found: dict[str, Any]) -> dict[str, Any]:
    """A probe as answered: its conditions as judged (defaults filled in), no secrets
    (an inline definition holds references, and passwords show as `password_set`)."""
    out = dict(found)
    if out.get("definition"):
        definition = TestDefinition.model_validate(out["definition"])
        out["definition"] = definition.model_dump(mode="json")
    return out


async def save(p: Platform, scope: Principal, body: ProbeIn, probe_id: str | None = None) -> str:
    project = own_project(scope, body)  # type: ignore[arg-type]
    action = "probe_edited" if probe_id is not None else "probe_created"
    if probe_id is not None:
        await probe(p, scope, probe_id, EDITOR)
    probe_id = probe_id or new_id("probe")
    minimum = p.settings.probe_min_interval_s
    if body.interval_s < minimum:
        raise ApiError(422, "validation_error", f"interval_s: at least {minimum:g} s", "interval_s")
    if await query(p, named.name_taken, "probes", project, body.name, probe_id):
        message = f"name: project {project!r} already has a probe named {body.name!r}"
        raise ApiError(422, "validation_error", message, "name")
    definition = body.definition
    if body.test_id is not None:
        found = await target(p, {"test_id": body.test_id, "project": project})
        if found is None:
            message = f"test_id: no test {body.test_id!r} in project {project!r}"
            raise ApiError(422, "validation_error", message, "test_id")
        check_on = found
    else:
        assert definition is not None
        definition = definition.model_copy(update={"project": project, "webhooks": []})
        await check_references(p, definition)
        check_on = definition
    try:
        probe_core.check_target(check_on, body.interval_s, "definition")
    except ValueError as exc:
        raise _invalid(exc) from None
    if definition is not None:
        definition = await secret_store.store_secrets(p, probe_id, definition)
    degraded, unhealthy = probe_core.default_conditions(check_on)
    doc = {
        "interval_s": body.interval_s,
        "test_id": body.test_id,
        "definition": definition.model_dump(mode="json") if definition else None,
        "degraded": body.thresholds.degraded if body.thresholds.degraded is not None else degraded,
        "unhealthy": (
            body.thresholds.unhealthy if body.thresholds.unhealthy is not None else unhealthy
        ),
        "confirm": body.confirm,
        "enabled": body.enabled,
    }
    await query(p, rows.save_probe, probe_id, project, body.name, doc)
    await secret_store.shred_unused(p, probe_id, definition)
    await service.audit(p, scope.actor, action, project, probe_id)
    return probe_id


async def set_enabled(p: Platform, scope: Principal, probe_id: str, enabled: bool) -> None:
    """Pause (no new executions; its health stays as last judged) or resume a probe."""
    found = await probe(p, scope, probe_id, EDITOR)
    await query(p, rows.set_enabled, probe_id, enabled)
    await service.audit(p, scope.actor, "probe_edited", found["project"], probe_id)


async def delete(p: Platform, scope: Principal, probe_id: str) -> None:
    found = await probe(p, scope, probe_id, EDITOR)
    await query(p, rows.delete_probe, probe_id)
    await secret_store.shred_unused(p, probe_id, None)  # crypto-shredding
    await service.audit(p, scope.actor, "probe_deleted", found["project"], probe_id)


# --- a project's webhooks and status page ----------------------------------------------


def project_scope(scope: Principal, project: str, role: AccessRole) -> None:
    """404 unless the caller sees the project; 403 below `role` there."""
    if not scope.sees(project):
        raise ApiError(404, "not_found", f"no project {project!r}", "project")
    if not scope.may(role, project):
        raise ApiError(403, "forbidden", f"this needs the {role.value} role in project {project!r}")


class ProjectWebhooksIn(BaseModel):
    """The project's webhooks: every probe health change is POSTed to each, signed
    like a test's (X-CallMeter-Signature: sha256=HMAC of the body with its secret)."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)


def webhooks_view(hooks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "webhooks": [{"url": h["url"], "secret_set": h["secret_ref"] is not None} for h in hooks]
    }


async def set_webhooks(
    p: Platform, scope: Principal, project: str, body: ProjectWebhooksIn
) -> None:
    """Replace the project's webhooks; one given again without a secret keeps its own."""
    project_scope(scope, project, ADMIN)
    owner = f"project:{project}"

    def write(conn: Any) -> None:
        with conn.transaction():
            rows.lock_project_webhooks(conn, project)
            before = {h["url"]: h["secret_ref"] for h in rows.project_webhooks(conn, project)}
            hooks = []
            for hook in body.webhooks:
                ref = before.get(hook.url)
                if hook.secret is not None and hook.secret.get_secret_value():
                    value = hook.secret.get_secret_value()
                    ref = secrets.put(conn, p.master_key, project, owner, "webhook_secret", value)
                hooks.append({"url": hook.url, "secret_ref": ref})
            urls = [h["url"] for h in hooks]
            dup = next((u for i, u in enumerate(urls) if u in urls[:i]), None)
            if dup is not None:
                raise ApiError(422, "validation_error", f"webhooks: {dup} twice", "webhooks")
            rows.set_project_webhooks(conn, project, hooks)
            secrets.shred_owned(conn, owner, {h["secret_ref"] for h in hooks if h["secret_ref"]})

    await query(p, write)
    await service.audit(p, scope.actor, "project_webhooks_changed", project, project)


async def set_status_page(p: Platform, scope: Principal, project: str, public: bool) -> str | None:
    """Publish (at an unguessable path) or withdraw the project's status page (Admin)."""
    project_scope(scope, project, ADMIN)
    slug = await query(p, rows.set_status_page, project, public)
    action = "status_page_published" if public else "status_page_withdrawn"
    await service.audit(p, scope.actor, action, project, project)
    return slug
