"""The secret store: SIP passwords and webhook secrets, encrypted at rest.

Each secret has its own data key, kept only here, wrapped by the master key
(`callmeter_common.crypto`). Everything else (events, read models, pages, exports)
holds the secret's reference, `sec_<24 hex>`. Deleting a row is crypto-shredding:
nothing else can ever decrypt that secret again.

A secret belongs to a project and to an owner (`test:<id>`); the owner's deletion
deletes its secrets.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import psycopg

from callmeter_common import crypto

Kind = Literal["sip_password", "webhook_secret"]
REF_PATTERN = r"^sec_[0-9a-f]{24}$"


@dataclass(frozen=True)
class Secret:
    ref: str
    project: str
    owner: str
    kind: str
    value: str


def new_ref() -> str:
    return "sec_" + _random.token_hex(12)


def _aad(ref: str, project: str, owner: str, kind: str) -> bytes:
    return f"{ref}|{project}|{owner}|{kind}".encode()


def put(
    conn: psycopg.Connection, master: bytes, project: str, owner: str, kind: Kind, value: str
) -> str:
    ref = new_ref()
    data_key = crypto.new_data_key()
    aad = _aad(ref, project, owner, kind)
    conn.execute(
        "INSERT INTO secrets (secret_id, project, owner, kind, data_key, ciphertext)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            ref,
            project,
            owner,
            kind,
            crypto.encrypt(master, data_key, aad),
            crypto.encrypt(data_key, value.encode(), aad),
        ),
    )
    return ref


def get(conn: psycopg.Connection, master: bytes, ref: str) -> Secret | None:
    """The secret, decrypted; None when it does not exist (never stored, or shredded)."""
    row = conn.execute(
        "SELECT project, owner, kind, data_key, ciphertext FROM secrets WHERE secret_id = %s",
        (ref,),
    ).fetchone()
    if row is None:
        return None
    project, owner, kind, wrapped, box = row
    aad = _aad(ref, project, owner, kind)
    data_key = crypto.decrypt(master, bytes(wrapped), aad)
    return Secret(ref, project, owner, kind, crypto.decrypt(data_key, bytes(box), aad).decode())


def owners(conn: psycopg.Connection, refs: list[str]) -> dict[str, tuple[str, str, str]]:
    """ref -> (project, owner, kind) for the refs that exist."""
    rows = conn.execute(
        "SELECT secret_id, project, owner, kind FROM secrets WHERE secret_id = ANY(%s)", (refs,)
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def shred_owned(conn: psycopg.Connection, owner: str, keep: Collection[str] = ()) -> int:
    """Delete the owner's secrets except `keep`; returns how many were destroyed."""
    cur = conn.execute(
        "DELETE FROM secrets WHERE owner = %s AND NOT (secret_id = ANY(%s))", (owner, list(keep))
    )
    return cur.rowcount


def shred_projects(conn: psycopg.Connection, projects: Collection[str]) -> int:
    """Delete every secret of these projects (an organisation deleted); returns how many."""
    cur = conn.execute("DELETE FROM secrets WHERE project = ANY(%s)", (list(projects),))
    return cur.rowcount
