"""Registrar mode of one endpoint: REGISTER with digest auth, refresh, de-register.

pjsua does the protocol (authentication, refreshing `delayBeforeRefreshSec`
before the granted expiry); this class configures it and turns its
onRegState reports into the endpoint's facts: time to register, granted
Expires, failure code, and whether the Expires: 0 at the end was answered.
Like the rest of the host it runs in the main thread only; onRegState just
records, the endpoint's tick acts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pjsua2 as pj

log = logging.getLogger("callmeter.host")
REGISTER_TIMEOUT_S = 40.0  # pjsua reports 408 after Timer F (32 s); this is the backstop
UNREGISTER_WAIT_S = 3.0  # how long the endpoint waits for the answer to Expires: 0


def sip_uri(hostport: str, transport: str, lr: bool = False) -> str:
    params = (";lr" if lr else "") + (f";transport={transport}" if transport != "udp" else "")
    # sip:...;transport=tls, not sips: (which would demand TLS on every hop to the callee)
    return f"sip:{hostport}{params}"


class Registration:
    def __init__(self, registrar: dict[str, Any], account: dict[str, Any] | None, user: str):
        self.registrar = registrar
        self.user = user
        self.account = account or {"username": user, "password": "", "auth_username": None}
        self.domain = registrar["domain"] or registrar["host"]
        self.started = time.monotonic()
        self.state = "pending"  # -> registered | failed; registered -> unregistering -> done
        self.time_to_register_ms: float | None = None
        self.expires_s: int | None = None
        self.code: int | None = None
        self.reason = ""
        self.refreshes = 0  # successful REGISTERs after the first
        self.refresh_failures = 0
        self.unregister_at: float | None = None
        self.new_reports: list[tuple[str, dict[str, Any]]] = []  # events for the main loop

    @property
    def aor(self) -> str:
        """What callers dial: the registrar routes it to our current contact."""
        return f"sip:{self.user}@{self.domain}"

    def configure(self, cfg: pj.AccountConfig) -> None:
        r, a = self.registrar, self.account
        transport = r["transport"]
        cfg.idUri = self.aor
        cfg.regConfig.registrarUri = sip_uri(f"{r['host']}:{r['port']}", transport)
        cfg.regConfig.timeoutSec = r["expires_s"]
        cfg.regConfig.retryIntervalSec = 0  # a failed registration is a result, not a retry loop
        cfg.regConfig.registerOnAdd = True
        cfg.regConfig.dropCallsOnFail = False  # a failed refresh must not end a running call
        # The default 5 s refresh margin is more than the whole lifetime of a short
        # registration; keep a refresh before expiry possible for any Expires >= 5.
        cfg.regConfig.delayBeforeRefreshSec = max(1, min(5, r["expires_s"] // 3))
        proxy = r["outbound_proxy"] or f"{r['host']}:{r['port']}"
        cfg.sipConfig.proxies.append(sip_uri(proxy, transport, lr=True))
        cred = pj.AuthCredInfo("digest", "*", a["auth_username"] or a["username"], 0, a["password"])
        cfg.sipConfig.authCreds.append(cred)
        # Loopback/LAN test beds: never re-register because a Via "received" differs,
        # and no RFC 5626 outbound (+sip.instance) that plain registrars may mishandle.
        nat = cfg.natConfig
        nat.contactRewriteUse = nat.viaRewriteUse = nat.sdpNatRewriteUse = 0
        nat.sipOutboundUse = 0

    # -------------------------------------------------------------- callbacks
    def on_reg_state(self, prm: pj.OnRegStateParam) -> None:
        code, reason, expires = int(prm.code), str(prm.reason), int(prm.expiration)
        now = time.monotonic()
        if self.state == "unregistering":
            if expires == 0 or code >= 300:
                self.state = "done"
            return
        if 200 <= code < 300 and expires > 0:
            self.expires_s = expires
            if self.state == "pending":
                self.state = "registered"
                self.time_to_register_ms = round((now - self.started) * 1000.0, 3)
            else:
                self.refreshes += 1
            self.new_reports.append(
                (
                    "registered",
                    {
                        "time_to_register_ms": self.time_to_register_ms,
                        "expires_s": expires,
                        "refresh": self.refreshes,
                        "contact_uri": self.aor,
                    },
                )
            )
        elif self.state == "pending":
            self.fail(code, reason)
        elif self.state == "registered" and code >= 300:
            self.refresh_failures += 1
            log.warning("%s: registration refresh failed: %s %s", self.user, code, reason)

    def fail(self, code: int | None, reason: str) -> None:
        self.state, self.code, self.reason = "failed", code, reason
        self.new_reports.append(("registration_failed", {"code": code, "reason": reason}))

    # -------------------------------------------------------------- main loop
    def check_timeout(self, now: float) -> None:
        if self.state == "pending" and now - self.started > REGISTER_TIMEOUT_S:
            self.fail(408, "no answer to REGISTER")

    def unregister(self, account: pj.Account) -> None:
        """Send REGISTER Expires: 0 (only if we are registered)."""
        if self.state != "registered":
            self.state = "done"
            return
        self.state, self.unregister_at = "unregistering", time.monotonic()
        try:
            account.setRegistration(False)
        except pj.Error as exc:
            log.warning("%s: unregister failed: %s", self.user, exc.info())
            self.state = "done"

    def settled(self, now: float) -> bool:
        """True once the de-registration was answered (or we gave up waiting)."""
        if self.state == "unregistering" and now - (self.unregister_at or now) > UNREGISTER_WAIT_S:
            log.warning("%s: no answer to REGISTER Expires: 0", self.user)
            self.state = "done"
        return self.state in ("done", "failed")
