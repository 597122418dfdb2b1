"""CallMeter's event catalogue: schemas, subjects, streams, codec, upcasters.

Services import events from here and nowhere else; subjects come from
`event.subject()`, never from hand-built strings.
"""

from callmeter_vocabulary import (
    GOOD_OUTCOMES,
    OUTCOMES,
    PHASES,
    TERMINAL_STATUSES,
    Direction,
    Outcome,
    Phase,
    RunStatus,
)

from .access_events import (
    ACCESS_EVENTS,
    AccessRole,
    ApiKeyCreated,
    ApiKeyRevoked,
    AuditRecorded,
    MembershipSet,
    OrganisationCreated,
    OrganisationDeleted,
    PasswordChanged,
    ProjectCreated,
    UserCreated,
)
from .base import Event, utcnow
from .codec import (
    BY_TYPE,
    EVENT_TYPES,
    EventDecodeError,
    current_version,
    decode,
    encode,
    register_upcaster,
    upcast,
)
from .credentials import CREDENTIAL_SUBJECT, CredentialReply, CredentialRequest
from .endpoint_events import (
    CallAttempted,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRecorded,
    DtmfReceived,
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    EndpointPhaseChanged,
    EndpointRegistered,
    ReceiverWaitExtended,
    RegistrationFailed,
    Role,
    ScenarioActionExecuted,
    SpeechQualityMeasured,
    host_lost_reason,
    lost_host,
)
from .metric_events import MetricSample, MetricValue, SipMessage
from .platform_events import COMPONENT_NAMES, PlatformOutage
from .probe_events import Health, ProbeHealthChanged
from .run_events import (
    CapacityStepJudged,
    GeneratorOverloaded,
    RunCompleted,
    RunCreated,
    RunDispatching,
    RunEvaluated,
    RunFailed,
    RunQueued,
    RunRejected,
    RunSamplesStored,
    RunStarted,
    RunStopping,
    StopRequested,
    TestDeleted,
    TestSaved,
    ThresholdOutcome,
)
from .streams import ACCESS, ALL_STREAMS, DEADLETTER, EVENTS, METRICS, TRACES, WORKERS, StreamDef
from .subjects import (
    all_run_events,
    all_test_events,
    assignments_for_worker,
    call_records,
    endpoint_events,
    is_call_record,
    metrics_for_run,
    run_endings,
    run_events,
    stop_signals,
    traces_for_endpoint,
    traces_for_run,
    waits_for_worker,
)
from .testdef import (
    HOST_INVITES_PER_S,
    PATTERN_LEAD_S,
    AudioRef,
    CallOptions,
    CallPattern,
    CapacitySearch,
    Codec,
    Group,
    RatePattern,
    RateStep,
    Registrar,
    RepeatPattern,
    ScenarioAction,
    SinglePattern,
    SipAccount,
    TestDefinition,
    endpoint_id,
)
from .worker_events import WorkerHeartbeat, WorkerLost, WorkerOffline, WorkerOnline

__all__ = [name for name in dir() if not name.startswith("_")]
