"""The test definition users save and run; validated once, here.

Every error names the field it is about, so the API can return it as is.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, computed_field, model_validator

from .thresholds import SPEECH_METRICS
from .thresholds import parse as parse_threshold

Codec = Literal["PCMU", "PCMA", "G722", "GSM", "speex", "iLBC"]
Transport = Literal["udp", "tcp", "tls"]
# Group names become NATS subject tokens and endpoint ids: keep them plain.
GroupName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
# What a group's endpoints play instead of the tone: the shipped speech reference or an
# uploaded WAV by content hash (POST /api/v1/audio; callmeter_common.wav validates it).
AudioRef = Annotated[str, Field(pattern=r"^(speech-en|sha256:[0-9a-f]{64})$")]
# A secret in the secret store (libs/storage/secrets.py): events, read models and
# responses carry this reference, never the secret.
SecretRef = Annotated[str, Field(pattern=r"^sec_[0-9a-f]{24}$")]
RegistrarId = Annotated[str, Field(pattern=r"^reg_[0-9a-f]{12}$")]
PoolId = Annotated[str, Field(pattern=r"^pool_[0-9a-f]{12}$")]
# A secret as given on input: the API moves it to the secret store and puts its
# reference in its place before any event is written. Never serialised (exclude).
SecretInput = Annotated[SecretStr | None, Field(default=None, max_length=200, exclude=True)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Registrar(_Frozen):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Transport = "udp"
    domain: str | None = Field(default=None, max_length=255)
    outbound_proxy: str | None = Field(default=None, max_length=255)
    # Requested registration lifetime; the server may grant less (recorded as expires_s).
    expires_s: int = Field(default=300, ge=5, le=86_400)


def _drop_read_only(data: Any, flag: str, secret: str) -> Any:
    """Accept a document as read back (with its `*_set` flag) as input; an empty
    secret is no secret."""
    if isinstance(data, dict) and (flag in data or data.get(secret) == ""):
        return {k: v for k, v in data.items() if k != flag and not (k == secret and v == "")}
    return data


class SipAccount(_Frozen):
    username: str = Field(min_length=1, max_length=128)
    password: SecretInput  # write-only: on read, password_set
    password_ref: SecretRef | None = None
    auth_username: str | None = Field(default=None, max_length=128)

    @model_validator(mode="before")
    @classmethod
    def _read_only(cls, data: Any) -> Any:
        return _drop_read_only(data, "password_set", "password")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def password_set(self) -> bool:
        return self.password_ref is not None or bool(
            self.password and self.password.get_secret_value()
        )


class CallOptions(_Frozen):
    """Per-group SIP behaviour of the endpoints (defaults: a plain RFC 3261 phone)."""

    prack: Literal["off", "supported", "required"] = "off"  # 100rel (RFC 3262)
    session_timer: Literal["off", "optional", "required", "always"] = "off"  # RFC 4028
    session_expires_s: int = Field(default=1800, ge=90, le=86_400)
    min_se_s: int = Field(default=90, ge=90, le=86_400)
    answer_delay_s: float = Field(default=0.0, ge=0, le=300)  # receiver: INVITE -> 180
    ring_time_s: float = Field(default=0.0, ge=0, le=300)  # receiver: 180 -> 200
    invite_timeout_s: float = Field(default=60.0, gt=0, le=600)  # caller: CANCEL after
    transport: Transport = "udp"  # direct mode; with a registrar its transport wins
    srtp: Literal["off", "optional", "mandatory"] = "off"  # SDES keying
    dscp_rtp: int | None = Field(default=None, ge=0, le=63)


class ScenarioAction(_Frozen):
    """One action at `at_s` seconds after the call is answered."""

    at_s: float = Field(ge=0, le=86_400)
    action: Literal["hold", "resume", "dtmf", "update_media"]
    digits: str | None = Field(default=None, pattern=r"^[0-9*#A-Da-d]{1,32}$")
    method: Literal["rfc4733", "info"] = "rfc4733"  # DTMF method
    codec: Codec | None = None  # update_media: re-INVITE offering this codec first

    @model_validator(mode="after")
    def _needs(self) -> ScenarioAction:
        if self.action == "dtmf" and not self.digits:
            raise ValueError("digits: a dtmf action needs digits")
        if self.action == "update_media" and self.codec is None:
            raise ValueError("codec: an update_media action needs a codec")
        return self


# INVITEs per second one endpoint host (one pjsua2 process, at most 4 calls) is planned
# to set up or take. Churn inside one process is what aborts it (PJSUA2.md); a rate or
# repeat group must spread its calls over enough endpoints (hence hosts) to stay under
# this. Measured by bench/host_cps.py, see docs/traffic.md.
HOST_INVITES_PER_S = 10.0
# A patterned group's callers share one start instant after the dispatcher sends them
# out (TestDefinition.pattern_lead_s): this, plus HOST_START_PACE_S for each endpoint
# host their worker starts for them; the rate counts from there. A caller ready later
# shifts its own calls, and the group no longer keeps its rate.
PATTERN_LEAD_S = 1.5
# How fast one worker gets endpoint hosts ready when it starts many at once (a pjsua2
# process takes about 0.4 s of CPU to start): bench/cps.py on the shared 2-core machine,
# 28 caller hosts were all ready 23 s after their dispatch, 56 after 44 to 46 s.
HOST_START_PACE_S = 0.8
# A patterned caller may take this long from its dispatch until it is registered and
# calling: its endpoint host starts among many. bench/cps.py at 64 calls/s (56 caller
# hosts started at once beside 56 receiver hosts, shared 2-core machine): callers were
# ready 9 to 46 s after their dispatch. Its receiver is kept for it (first_call_by), and
# the run's time budget allows for it (TestDefinition.pattern_start_s).
CALLER_START_S = 60.0
ENDPOINTS_PER_HOST = 4  # calls per host (PJSUA_MAX_CALLS): each endpoint carries one call


class SinglePattern(_Frozen):
    """Today's default: each caller makes one call that lasts the run."""

    kind: Literal["single"] = "single"


class RepeatPattern(_Frozen):
    """Each caller calls, holds `hold_s`, hangs up, waits `pause_s`, calls again."""

    kind: Literal["repeat"]
    hold_s: float = Field(gt=0, le=86_400)
    pause_s: float = Field(default=0.0, ge=0, le=86_400)
    calls: int | None = Field(default=None, ge=1, le=1_000_000)  # per endpoint; None: until the end

    def peak_cps(self, endpoints: int) -> float:
        """Highest calls per second the group can start (one call per endpoint at a time)."""
        return endpoints / (self.hold_s + self.pause_s)


class RateStep(_Frozen):
    at_s: float = Field(ge=0, le=86_400)  # from the start of the run
    cps: float = Field(ge=0, le=10_000)


class RatePattern(_Frozen):
    """Group-level calls per second (SIPp -r/-l/-m/-d; StarTrinity CPS + max concurrent).

    The rate is `cps`, or rises linearly from `cps` to `cps_end` over `ramp_s`, or
    follows `steps` (each from its `at_s`). The cap on concurrent calls is the group's
    `endpoints` (SIPp -l): arrivals rotate over the endpoints and each carries one call
    at a time, so an arrival whose endpoint is still in its call is not attempted.
    Each call is held `hold_s` after it is answered, or an exponential time with that
    mean (seeded: the same run definition gives the same holds). `max_calls` (SIPp -m)
    stops the group after that many attempts.
    """

    kind: Literal["rate"]
    cps: float | None = Field(default=None, gt=0, le=10_000)
    cps_end: float | None = Field(default=None, gt=0, le=10_000)
    ramp_s: float = Field(default=0.0, ge=0, le=86_400)
    steps: list[RateStep] = Field(default_factory=list, max_length=100)
    hold: Literal["fixed", "exponential"] = "fixed"
    hold_s: float = Field(gt=0, le=86_400)
    max_calls: int | None = Field(default=None, ge=1, le=10_000_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_shape(self) -> RatePattern:
        if (self.cps is None) == (not self.steps):
            raise ValueError("cps: give either cps (with optional cps_end/ramp_s) or steps")
        if self.cps_end is not None and (self.cps is None or self.ramp_s <= 0):
            raise ValueError("ramp_s: a ramp to cps_end needs cps and ramp_s > 0")
        if self.ramp_s > 0 and self.cps_end is None:
            raise ValueError("cps_end: ramp_s needs the rate to ramp to (cps_end)")
        if self.steps:
            times = [s.at_s for s in self.steps]
            if times[0] != 0:
                raise ValueError("steps.0.at_s: the first step starts at 0")
            for i in range(1, len(times)):
                if times[i] <= times[i - 1]:
                    raise ValueError(f"steps.{i}.at_s: steps must be in increasing at_s")
            if not any(s.cps > 0 for s in self.steps):
                raise ValueError("steps: at least one step needs cps > 0")
        return self

    def peak_cps(self, endpoints: int = 0) -> float:
        if self.steps:
            return max(s.cps for s in self.steps)
        assert self.cps is not None
        return max(self.cps, self.cps_end or 0.0)


CallPattern = Annotated[SinglePattern | RepeatPattern | RatePattern, Field(discriminator="kind")]


class Webhook(_Frozen):
    """A URL told of every status change of the test's runs, signed with HMAC-SHA256."""

    url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://")
    secret: SecretInput  # write-only; none: CALLMETER_WEBHOOK_SECRET
    secret_ref: SecretRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_only(cls, data: Any) -> Any:
        return _drop_read_only(data, "secret_set", "secret")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def secret_set(self) -> bool:
        return self.secret_ref is not None or bool(self.secret and self.secret.get_secret_value())


def _per_step(metric: str) -> None:
    """A capacity step is judged on its own seconds: a figure scored after the calls end
    (PESQ) has no value then."""
    if metric in SPEECH_METRICS:
        raise ValueError(f"{metric} is scored after each call ends, not per capacity step")


class CapacitySearch(_Frozen):
    """A run that steps its load up until a stop condition fails: "what is the most this
    system carries at acceptable quality?"

    In endpoints (`endpoints_per_step`): each calling group starts that many more
    callers every `step_s` seconds (caller n joins in step (n-1) // endpoints_per_step),
    each calling until the run ends; its group's `endpoints` is the most it will try.
    In calls per second (`cps_per_step`, with rate patterns): every caller is there from
    the start and each calling group's rate is `cps_per_step` in the first step, twice
    that in the second, and so on up to its pattern's `cps` (the most it will try).
    Each step is judged on its own seconds (after `settle_s`, while its calls set up)
    against `stop_when` (threshold expressions; empty: the test's thresholds); the
    first failing step, or a GeneratorOverloaded, stops the run. The answer is the last
    step that passed.
    """

    endpoints_per_step: int | None = Field(default=None, ge=1, le=10_000)
    cps_per_step: float | None = Field(default=None, gt=0, le=10_000)
    step_s: float = Field(ge=3, le=3_600)
    settle_s: float = Field(default=2.0, ge=0, le=600)
    stop_when: list[str] = Field(default_factory=list, max_length=50)
    # What the system must sustain (concurrent calls; calls per second with
    # cps_per_step): below it the run fails the CLI.
    target_calls: int | None = Field(default=None, ge=1)
    target_cps: float | None = Field(default=None, gt=0, le=10_000)

    @model_validator(mode="after")
    def _settles_within_a_step(self) -> CapacitySearch:
        if (self.endpoints_per_step is None) == (self.cps_per_step is None):
            raise ValueError("endpoints_per_step: give either endpoints_per_step or cps_per_step")
        if self.target_calls is not None and self.cps_per_step is not None:
            raise ValueError("target_calls: a search in calls per second has target_cps")
        if self.target_cps is not None and self.endpoints_per_step is not None:
            raise ValueError("target_cps: a search in endpoints has target_calls")
        if self.settle_s >= self.step_s:
            raise ValueError("settle_s: must be shorter than step_s")
        for i, expression in enumerate(self.stop_when):
            try:
                _per_step(parse_threshold(expression).metric)
            except ValueError as exc:
                raise ValueError(f"stop_when.{i}: {exc}") from None
        return self

    def step_of(self, index: int) -> int:
        """The step (0-based) in which caller `index` (0-based within its group) joins."""
        if self.endpoints_per_step is None:
            return 0  # calls per second: every caller is there from the start
        return index // self.endpoints_per_step

    def cps_at(self, step: int, most: float) -> float:
        """A calling group's calls per second in `step` (0-based), up to `most`."""
        assert self.cps_per_step is not None
        return min((step + 1) * self.cps_per_step, most)


class Group(_Frozen):
    name: GroupName
    endpoints: int = Field(ge=1, le=10_000)
    codecs: list[Codec] = Field(default_factory=lambda: list[Codec](["PCMU"]), min_length=1)
    calls: GroupName | None = None
    target_uri: str | None = Field(default=None, max_length=512)
    registrar: Registrar | None = None
    accounts: list[SipAccount] = Field(default_factory=list)
    # Project resources, by id (/api/v1/registrars, /api/v1/pools). Starting a run copies
    # the registrar's settings into `registrar` and the pool's free accounts (not in use
    # by another active run) into `accounts`, so the run's definition is complete.
    registrar_id: RegistrarId | None = None
    account_pool: PoolId | None = None
    region: str | None = Field(default=None, max_length=64)
    workers: list[str] = Field(default_factory=list)  # explicit worker selection
    # Simulated loss for self-checks, whole percent (pjsua applies it per process).
    drop_tx_pct: int = Field(default=0, ge=0, le=100)
    drop_rx_pct: int = Field(default=0, ge=0, le=100)
    options: CallOptions = Field(default_factory=CallOptions)
    scenario: list[ScenarioAction] = Field(default_factory=list, max_length=50)
    audio: AudioRef | None = None  # None: a 440 Hz tone (PESQ cannot score a tone)
    pattern: CallPattern = Field(default_factory=SinglePattern)  # how callers make calls

    @model_validator(mode="after")
    def _pattern_fits(self) -> Group:
        p = self.pattern
        if isinstance(p, SinglePattern):
            return self
        per_host = p.peak_cps(self.endpoints) * min(ENDPOINTS_PER_HOST, self.endpoints)
        per_host /= self.endpoints
        if per_host > HOST_INVITES_PER_S:
            need = p.peak_cps(self.endpoints) * ENDPOINTS_PER_HOST / HOST_INVITES_PER_S
            # repeat: the hold makes the rate; rate: more endpoints spread it over more hosts
            field = "pattern.hold_s" if isinstance(p, RepeatPattern) else "endpoints"
            # A hold of 5e-324 s makes the rate infinite: no endpoint count is enough.
            fix = (
                f"give at least {int(need) + 1} endpoints or a lower rate"
                if math.isfinite(need)
                else "give a longer hold_s or pause_s"
            )
            raise ValueError(
                f"{field}: {per_host:g} calls/s per endpoint host is more than the "
                f"{HOST_INVITES_PER_S:g} a host takes (each host carries "
                f"{ENDPOINTS_PER_HOST} endpoints); {fix}"
            )
        return self


class TestDefinition(_Frozen):
    name: str = Field(min_length=1, max_length=200)
    duration_s: float = Field(gt=0, le=86_400)
    buildup_s: float = Field(default=0.0, ge=0, le=3_600)
    groups: list[Group] = Field(min_length=1, max_length=100)
    # Runs are limited per project; older events without it belong to "default".
    project: str = Field(
        default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 _.-]+$"
    )
    thresholds: list[str] = Field(default_factory=list, max_length=50)  # "mos_avg >= 4.0"
    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)
    # PESQ (MOS-LQO) on this many calls per run: receivers called by a group that plays
    # audio record and score it. 0 turns it off.
    speech_quality_calls: int = Field(default=3, ge=0, le=100)
    capacity: CapacitySearch | None = None  # a capacity search instead of a fixed load

    @model_validator(mode="after")
    def _groups_consistent(self) -> TestDefinition:
        names = [g.name for g in self.groups]
        for i, group in enumerate(self.groups):
            if group.name in names[:i]:
                raise ValueError(f"groups.{i}.name: duplicate group name {group.name!r}")
            if group.calls is not None and group.calls not in names:
                raise ValueError(f"groups.{i}.calls: no group named {group.calls!r}")
            if group.calls == group.name:
                raise ValueError(f"groups.{i}.calls: a group cannot call itself")
            if group.calls is not None and group.target_uri is not None:
                raise ValueError(f"groups.{i}.target_uri: give either calls or target_uri")
            if not isinstance(group.pattern, SinglePattern):
                if group.calls is None and group.target_uri is None:
                    raise ValueError(f"groups.{i}.pattern: only a calling group has a pattern")
                callee = next((g for g in self.groups if g.name == group.calls), None)
                if callee is not None and callee.endpoints < group.endpoints:
                    raise ValueError(
                        f"groups.{i}.pattern: {group.calls!r} needs at least {group.endpoints} "
                        "endpoints (each receiver takes its caller's calls one at a time)"
                    )
                if callee is not None and any(
                    g.calls == callee.name for g in self.groups if g is not group
                ):
                    raise ValueError(
                        f"groups.{i}.pattern: {group.calls!r} is called by another group too"
                    )
        for i, expression in enumerate(self.thresholds):
            try:
                parse_threshold(expression)
            except ValueError as exc:
                raise ValueError(f"thresholds.{i}: {exc}") from None
        if self.capacity is not None:
            if not self.capacity.stop_when and not self.thresholds:
                raise ValueError("capacity.stop_when: give stop conditions (or thresholds)")
            if self.capacity.cps_per_step is not None:
                for i, group in enumerate(self.groups):
                    p = group.pattern
                    if (group.calls or group.target_uri) and not (
                        isinstance(p, RatePattern) and p.cps is not None and p.cps_end is None
                    ):
                        raise ValueError(
                            f"groups.{i}.pattern: a capacity search in calls per second"
                            " steps a rate pattern up to its cps: give it kind rate and"
                            " cps (no cps_end or steps)"
                        )
            if not self.capacity.stop_when:  # the thresholds judge each step
                for i, expression in enumerate(self.thresholds):
                    try:
                        _per_step(parse_threshold(expression).metric)
                    except ValueError as exc:
                        raise ValueError(
                            f"thresholds.{i}: {exc} (or give capacity.stop_when)"
                        ) from None
            steps = self.capacity_steps()
            if steps * self.capacity.step_s > self.duration_s:
                raise ValueError(
                    f"duration_s: {steps} steps of {self.capacity.step_s:g} s need"
                    f" {steps * self.capacity.step_s:g} s"
                )
        return self

    def capacity_steps(self) -> int:
        """Steps of a capacity search: enough for the largest calling group (in
        endpoints, or in calls per second)."""
        capacity = self.capacity
        if capacity is None:
            return 0
        callers = [g for g in self.groups if g.calls or g.target_uri]
        if capacity.cps_per_step is not None:
            rates = [g.pattern.cps or 0.0 for g in callers if isinstance(g.pattern, RatePattern)]
            most = max(rates, default=0.0)
            return max(1, math.ceil(most / capacity.cps_per_step - 1e-9))
        assert capacity.endpoints_per_step is not None
        return -(-max((g.endpoints for g in callers), default=0) // capacity.endpoints_per_step)

    def pattern_lead_s(self) -> float:
        """From the dispatch of the patterned callers to the instant their rates count
        from: time for their endpoint hosts to start, all of them on one worker at worst,
        so that the rate is kept from its first call rather than shifted by late hosts."""
        callers = sum(
            g.endpoints
            for g in self.groups
            if g.pattern.kind != "single" and (g.calls or g.target_uri)
        )
        return PATTERN_LEAD_S + HOST_START_PACE_S * math.ceil(callers / ENDPOINTS_PER_HOST)

    def pattern_start_s(self) -> float:
        """How long patterned callers may take from their dispatch to their calls: the
        longer of their lead and CALLER_START_S; 0 without a patterned caller."""
        if not any(g.pattern.kind != "single" and (g.calls or g.target_uri) for g in self.groups):
            return 0.0
        return max(CALLER_START_S, self.pattern_lead_s())

    def stepped_pattern(self, group: Group) -> CallPattern:
        """The pattern a group's endpoints run: with a capacity search in calls per
        second, its rate pattern as steps (`cps_at` each step, from the run's start)."""
        capacity, p = self.capacity, group.pattern
        if capacity is None or capacity.cps_per_step is None or not isinstance(p, RatePattern):
            return p
        assert p.cps is not None
        steps = [
            RateStep(at_s=k * capacity.step_s, cps=capacity.cps_at(k, p.cps))
            for k in range(self.capacity_steps())
        ]
        return p.model_copy(update={"cps": None, "steps": steps})

    def stop_conditions(self) -> list[str]:
        """What each capacity step is judged on."""
        return list(self.capacity.stop_when if self.capacity else []) or list(self.thresholds)

    def clear_secrets(self) -> list[str]:
        """Fields holding a secret in clear (input not yet moved to the secret store)."""
        fields = [
            f"groups.{i}.accounts.{j}.password"
            for i, g in enumerate(self.groups)
            for j, a in enumerate(g.accounts)
            if a.password is not None
        ]
        hooks = [
            f"webhooks.{i}.secret" for i, w in enumerate(self.webhooks) if w.secret is not None
        ]
        return fields + hooks

    def secret_refs(self) -> list[str]:
        """Every secret reference the definition holds."""
        refs = [a.password_ref for g in self.groups for a in g.accounts]
        return [r for r in refs + [w.secret_ref for w in self.webhooks] if r]

    def callee_groups(self) -> set[str]:
        """Names of groups that some other group calls (they receive)."""
        return {g.calls for g in self.groups if g.calls}

    def speech_samples(self) -> dict[str, str]:
        """Receivers that record for PESQ -> the audio their caller plays (the reference).

        Receiver n of a callee group is called by caller n (the dispatcher's pairing),
        so the first `speech_quality_calls` receivers called by a group with audio, in
        group order, are sampled: a few calls per run, chosen the same way every time.
        """
        out: dict[str, str] = {}
        for group in self.groups:
            callee = next((g for g in self.groups if g.name == group.calls), None)
            if group.audio is None or callee is None:
                continue
            for i in range(1, min(group.endpoints, callee.endpoints) + 1):
                if len(out) >= self.speech_quality_calls:
                    return out
                out.setdefault(endpoint_id(callee.name, i), group.audio)
        return out

    def total_endpoints(self) -> int:
        return sum(g.endpoints for g in self.groups)


def endpoint_id(group: str, index: int) -> str:
    """Endpoint ids are `<group>-<n>`, n from 1: readable and subject-safe."""
    return f"{group}-{index}"
