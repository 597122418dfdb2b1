"""The pure parts of access control: the fold, the principal's roles, the login limit."""

from __future__ import annotations

import callmeter_events as ev
from callmeter_api.login_limit import LoginLimit
from callmeter_api.principal import Principal, ProjectFilter
from callmeter_common.secrets_hash import hash_password, key_hash, new_api_key, verify_password
from callmeter_projections.access import DEFAULT_ORG, AccessState

R = ev.AccessRole
KEY = "cmk_12345678abc"


def key_created(role: ev.AccessRole) -> ev.ApiKeyCreated:
    """API key k1 ("ci") of project p1 in organisation acme, with `role`."""
    return ev.ApiKeyCreated(
        key_id="k1",
        name="ci",
        org="acme",
        project="p1",
        role=role,
        prefix=KEY[:12],
        key_hash=key_hash(KEY),
    )


def folded(events: list[ev.Event]) -> AccessState:
    """The access state after `events` (positions 1, 2, ...)."""
    s = AccessState()
    for seq, e in enumerate(events, 1):
        s.apply(seq, e)
    return s


def test_roles_rank_and_each_allows_the_ones_below():
    assert [r.value for r in R] == ["viewer", "tester", "editor", "admin", "owner"]
    assert R.EDITOR.allows(R.TESTER) and R.EDITOR.allows(R.EDITOR)
    assert not R.TESTER.allows(R.EDITOR) and R.OWNER.allows(R.ADMIN)


def test_the_fold_keeps_users_members_projects_keys_and_an_audit_line_each():
    h = hash_password("0123456789")
    s = folded(
        [
            ev.OrganisationCreated(org="acme", actor="env-key"),
            ev.ProjectCreated(org="acme", project="p1", actor="env-key"),
            ev.ProjectCreated(org=DEFAULT_ORG, project="p1", actor="x"),  # taken: ignored
            ev.UserCreated(username="ann", password_hash=h),
            ev.MembershipSet(org="acme", username="ann", role=R.EDITOR),
            ev.MembershipSet(org="acme", username="bob", role=R.VIEWER),
            ev.MembershipSet(org="acme", username="bob", role=None),
            key_created(R.TESTER),
        ]
    )
    assert s.org_of("p1") == "acme" and s.org_of("anything else") == DEFAULT_ORG
    assert s.orgs_of("ann") == {"acme": R.EDITOR} and s.orgs_of("bob") == {}
    assert s.key_by_hash(key_hash(KEY)).key_id == "k1"  # type: ignore[union-attr]
    s.apply(9, ev.ApiKeyRevoked(key_id="k1"))
    assert s.key_by_hash(key_hash(KEY)) is None
    assert [a.action for a in s.audit][-2:] == ["key_created", "key_revoked"]
    assert verify_password(s.users["ann"].password_hash, "0123456789")
    assert not verify_password(s.users["ann"].password_hash, "0123456788")


def test_a_deleted_organisation_keeps_its_project_names_and_nobody_keeps_access():
    s = folded(
        [
            ev.OrganisationCreated(org="acme"),
            ev.ProjectCreated(org="acme", project="p1"),
            ev.MembershipSet(org="acme", username="ann", role=R.OWNER),
            ev.MembershipSet(org=DEFAULT_ORG, username="ann", role=R.VIEWER),
            key_created(R.EDITOR),
            ev.OrganisationDeleted(org="acme", actor="user:ann"),
            ev.OrganisationDeleted(org=DEFAULT_ORG),  # never: it owns every other name
        ]
    )
    assert s.orgs == {DEFAULT_ORG} and s.deleted_orgs == {"acme"}
    assert s.orgs_of("ann") == {DEFAULT_ORG: R.VIEWER}
    assert s.key_by_hash(key_hash(KEY)) is None
    assert s.org_of("p1") == "acme"  # not the default organisation's now
    home = Principal("user:ann", org_roles=s.orgs_of("ann"), project_org=s.project_org)
    assert not home.sees("p1") and home.project_filter() == ProjectFilter(None, ("p1",))
    assert [a.action for a in s.audit][-1] == "org_deleted"


def test_a_member_sees_its_organisations_projects_and_the_default_one_every_other_name():
    orgs = {"a1": "acme", "g1": "globex"}
    acme = Principal("user:ann", org_roles={"acme": R.TESTER}, project_org=orgs)
    assert acme.role_in("a1") == R.TESTER and acme.role_in("g1") is None
    assert not acme.sees("default") and acme.may(R.TESTER, "a1") and not acme.may(R.EDITOR, "a1")
    assert acme.project_filter() == ProjectFilter(("a1",))
    home = Principal("user:root", org_roles={DEFAULT_ORG: R.OWNER}, project_org=orgs)
    assert home.sees("default") and home.sees("legacy") and not home.sees("a1")
    assert home.project_filter() == ProjectFilter(None, ("a1", "g1"))
    key = Principal("key:cmk_1", project_roles={"g1": R.VIEWER}, project_org=orgs)
    assert key.project == "g1" and key.role_in_org("globex") is None
    assert key.project_filter() == ProjectFilter(("g1",))


def test_failed_logins_are_limited_per_user_and_per_address():
    limit = LoginLimit(attempts=3, window_s=60)
    keys = ["user:ann", "addr:1.2.3.4"]
    for t in range(3):
        assert limit.retry_after(keys, now=t) == 0
        limit.failed(keys, now=t)
    assert limit.retry_after(["user:ann", "addr:5.6.7.8"], now=10) == 50  # the user
    assert limit.retry_after(["user:bob", "addr:1.2.3.4"], now=10) == 50  # the address
    assert limit.retry_after(keys, now=60.5) == 0  # the first failure left the window


def test_api_keys_are_random_shown_once_and_stored_as_a_hash_with_a_prefix():
    key, prefix, digest = new_api_key()
    assert key.startswith(prefix) and prefix.startswith("cmk_") and len(prefix) == 12
    assert digest == key_hash(key) and key not in digest and new_api_key()[0] != key
