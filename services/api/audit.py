"""One line of the audit trail: who did what, where (an AuditRecorded event in
CALLMETER_ACCESS, shown to the organisation's Admins; services/api/access.py)."""

from __future__ import annotations

from typing import Any

from callmeter_events import AuditRecorded

from .deps import Platform


async def audit(p: Platform, actor: str, action: Any, project: str, target: str) -> None:
    org = p.access.state.org_of(project)
    event = AuditRecorded(actor=actor, action=action, org=org, project=project, target=target)
    await p.access.publish(event)
