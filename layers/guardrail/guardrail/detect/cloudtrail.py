"""Typed CloudTrail records and the three shapes they arrive in.

Powertools ships ``EventBridgeModel`` but no model of the CloudTrail record under ``detail``: this is it.
EventBridge delivers CloudTrail's records under several detail-types: API calls, console actions, console
sign-ins and service events (AWS acting on its own) are read alike; any other CloudTrail detail-type
(Insights, and what CloudTrail adds later) is read and classified benign, never refused.

Tolerant where CloudTrail itself is: every field CloudTrail may leave out is optional and unknown fields are
ignored. A record without ``eventID`` takes the envelope's id or a stable hash of its content, without
``eventTime`` or ``awsRegion`` the envelope's; without ``userIdentity`` its caller is unknown, reported and
never contained. Only a record that cannot be named (no ``eventSource`` or ``eventName``) is invalid.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.errors import InvalidEventError
from guardrail.model import ApiCall, Principal, PrincipalKind, RecordKind

if TYPE_CHECKING:
    from pathlib import Path

# The detail-types read as records of calls (the rest of CloudTrail's are RecordKind.OTHER).
DETAIL_TYPES = {k.value: k for k in RecordKind if k is not RecordKind.OTHER}
CLOUDTRAIL_DETAIL_TYPES = sorted(DETAIL_TYPES)
OTHER_DETAIL_TYPES_END = " via CloudTrail"
# Identity Center provisions these roles; IAM refuses or the next provisioning undoes changes to them.
IDENTITY_CENTER_ROLE_PREFIX = "AWSReservedSSO_"
IDENTITY_CENTER_PATH = "/aws-reserved/sso.amazonaws.com/"
SERVICE_LINKED_PATH = "/aws-service-role/"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SessionIssuer(_Lenient):
    type: str | None = None
    principal_id: str | None = Field(None, alias="principalId")
    arn: str | None = None
    account_id: str | None = Field(None, alias="accountId")
    user_name: str | None = Field(None, alias="userName")


class SessionAttributes(_Lenient):
    creation_date: str | None = Field(None, alias="creationDate", max_length=64)


class SessionContext(_Lenient):
    session_issuer: SessionIssuer | None = Field(None, alias="sessionIssuer")
    attributes: SessionAttributes | None = None
    source_identity: str | None = Field(None, alias="sourceIdentity")


class UserIdentity(_Lenient):
    type: str = ""  # service events may leave it out
    principal_id: str | None = Field(None, alias="principalId")
    arn: str | None = None
    account_id: str | None = Field(None, alias="accountId")
    access_key_id: str | None = Field(None, alias="accessKeyId")
    user_name: str | None = Field(None, alias="userName")
    invoked_by: str | None = Field(None, alias="invokedBy")
    session_context: SessionContext | None = Field(None, alias="sessionContext")


class ResponseElements(_Lenient):
    """Only what a rule reads: a response can be large (RunInstances), and the rest is never parsed."""

    console_login: str | None = Field(None, alias="ConsoleLogin")
    # When a KMS key or a secret scheduled for deletion goes for good: the damage report's deadline.
    deletion_date: str | None = Field(None, alias="deletionDate", max_length=64)


class AdditionalEventData(_Lenient):
    mfa_used: str | None = Field(None, alias="MFAUsed")


class CloudTrailRecord(_Lenient):
    event_version: str | None = Field(None, alias="eventVersion")
    # "" is how CloudTrail leaves some of these out, and an unreadable time ("redacted" in a published
    # sample) places the call nowhere: both count as left out (api_call_of), decided in pydantic-core with
    # no Python validator on the hot path. Anything else must be what it says: the id is what exactly-once
    # keys on.
    event_id: str | None = Field(None, alias="eventID", max_length=256)
    event_time: datetime | str | None = Field(None, alias="eventTime", union_mode="left_to_right")
    event_source: str = Field(alias="eventSource", min_length=1, max_length=256)
    event_name: str = Field(alias="eventName", min_length=1, max_length=256)
    aws_region: str | None = Field(None, alias="awsRegion", max_length=64)
    user_identity: UserIdentity | None = Field(None, alias="userIdentity")
    response_elements: ResponseElements | None = Field(None, alias="responseElements")
    additional_event_data: AdditionalEventData | None = Field(None, alias="additionalEventData")
    # Read as it comes (some producers write strings here): only the ARNs of its objects are used.
    resources: list[Any] | None = Field(None, max_length=1000)
    source_ip_address: str | None = Field(None, alias="sourceIPAddress")
    user_agent: str | None = Field(None, alias="userAgent")
    request_parameters: dict[str, Any] | None = Field(None, alias="requestParameters")
    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")
    request_id: str | None = Field(None, alias="requestID")
    event_type: str | None = Field(None, alias="eventType")
    read_only: bool | None = Field(None, alias="readOnly")
    recipient_account_id: str | None = Field(None, alias="recipientAccountId")


class CloudTrailEnvelope(EventBridgeModel):
    """An EventBridge event whose detail is a CloudTrail record."""

    detail: CloudTrailRecord


def _describe(error: ValidationError, where: str) -> str:
    problems = []
    # The CloudTrail record is what matters; envelope bookkeeping fields come after it.
    errors = sorted(error.errors(), key=lambda e: e["loc"][:1] != ("detail",))
    for item in errors[:5]:
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problems.append(f"{where}{loc}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


# IAM's own syntax for a role or user name. Anything else in a record is not an identity IAM could hold,
# and must never reach an IAM call.
IAM_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)
# A session name (AssumeRole takes 2-64 of these characters; Identity Center's are user names, longer).
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,128}$", re.ASCII)
ACCOUNT_ID = re.compile(r"^\d{12}$", re.ASCII)


def _disagreement(label: str, pairs: list[tuple[str, str | None]]) -> str:
    """The values a record gives for one thing, which were found to differ."""
    present = ", ".join(f"{where}={_clip(value, 80)!r}" for where, value in pairs if value)
    return f"the identity's {label} disagree: {present}"


def _conflict(problems: list[str]) -> str | None:
    return "userIdentity does not describe one principal (" + "; ".join(problems) + ")" if problems else None


def _bad_name(name: str) -> str | None:
    return (
        None if not name or IAM_NAME.match(name) else f"{_clip(name, 80)!r} is not an IAM role or user name"
    )


def _bad_account(account: str) -> str | None:
    return None if ACCOUNT_ID.match(account) else f"{_clip(account, 40)!r} is not a 12-digit account id"


def _principal_cached(identity: UserIdentity, fallback_account: str) -> Principal:
    """principal_of, remembered: an agent's session makes many calls, and every one of them carries the same
    identity. The key is every field principal_of reads; Principals are values nobody mutates."""
    context = identity.session_context
    issuer = context.session_issuer if context else None
    key = (
        identity.type,
        identity.arn,
        identity.principal_id,
        identity.account_id,
        identity.access_key_id,
        identity.user_name,
        identity.invoked_by,
        context.source_identity if context else None,
        context.attributes.creation_date if context and context.attributes else None,
        (issuer.type, issuer.principal_id, issuer.arn, issuer.account_id, issuer.user_name)
        if issuer
        else None,
        fallback_account,
    )
    found = _PRINCIPALS.get(key)
    if found is None:
        if len(_PRINCIPALS) >= _PRINCIPALS_KEPT:
            _PRINCIPALS.clear()  # bounded: a container sees few identities; a flood of new ones starts over
        found = _PRINCIPALS[key] = principal_of(identity, fallback_account)
    return found


_PRINCIPALS: dict[tuple[object, ...], Principal] = {}
_PRINCIPALS_KEPT = 4096


def principal_of(identity: UserIdentity, fallback_account: str) -> Principal:
    """Who called, in IAM's terms: the role or user a containment would act on (see _principal_from)."""
    principal = _principal_from(identity, fallback_account)
    principal.identity_type = identity.type
    return principal


def _principal_from(identity: UserIdentity, fallback_account: str) -> Principal:
    """Who called, in IAM's terms: the role or user a containment would act on.

    The record names its caller several times (the caller's ARN, the session issuer's ARN and name, the
    principal id, account ids). A containment acts on one of them and the agent and protected checks read
    the others, so they must agree: a record whose fields describe two principals, or a name IAM would
    refuse, gets a `conflict` and is refused before anything is decided on it. This runs for every event:
    the common case is a few string comparisons, and the messages are built only when something differs.
    """
    kind_name = identity.type
    arn = identity.arn or ""
    account = identity.account_id or fallback_account
    issuer = identity.session_context.session_issuer if identity.session_context else None
    key = identity.access_key_id

    if kind_name == "Root":
        return Principal(PrincipalKind.ROOT, arn, account, "root", access_key_id=key)
    if kind_name == "IAMUser":
        parts = _arn_parts(arn, "iam") if arn else None
        arn_name = parts[1].rpartition("/")[2] if parts and parts[1].startswith("user/") else None
        arn_account = parts[0] if parts else None
        name = identity.user_name or arn_name or ""
        problems: list[str] = []
        if arn and arn_name is None:
            problems.append(f"userIdentity.arn {_clip(arn)!r} is not an IAM user ARN")
        if arn_name and arn_name != name:
            problems.append(
                _disagreement("names", [("userIdentity.arn", arn_name), ("userIdentity.userName", name)])
            )
        if arn_account and arn_account != account:
            problems.append(
                _disagreement(
                    "accounts", [("userIdentity.arn", arn_account), ("the record's account", account)]
                )
            )
        problems += [bad for bad in (_bad_name(name), _bad_account(account)) if bad]
        conflict = _conflict(problems)
        return Principal(PrincipalKind.USER, arn, account, name, access_key_id=key, conflict=conflict)
    if kind_name in ("AssumedRole", "FederatedUser"):
        return _session_principal(identity, issuer, arn, account, federated=kind_name == "FederatedUser")
    if kind_name == "AWSService":
        return Principal(PrincipalKind.SERVICE, arn, account, identity.invoked_by or "", access_key_id=key)
    if kind_name == "IdentityCenterUser":
        return Principal(PrincipalKind.IDENTITY_CENTER, arn, account, identity.user_name or "")
    return Principal(PrincipalKind.UNKNOWN, arn, account, identity.user_name or "", access_key_id=key)


def _arn_parts(arn: str, service: str) -> tuple[str, str] | None:
    """(account, resource) of an ARN of `service` in any partition, or None: string operations, not a
    regular expression, because this runs for every event."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1].startswith("aws") or parts[2] != service:
        return None
    account = parts[4]
    return (account, parts[5]) if len(account) == 12 and account.isdigit() else None


def _session_principal(
    identity: UserIdentity, issuer: SessionIssuer | None, arn: str, account: str, *, federated: bool
) -> Principal:
    """An assumed-role session (the role behind it is the principal) or a GetFederationToken session (the
    IAM user that minted it is): what the caller's ARN, the issuer and the principal id say must agree."""
    problems: list[str] = []
    arn_account = arn_role = session = None
    if arn:
        found = _arn_parts(arn, "sts")
        segments = found[1].split("/") if found else []
        if federated and len(segments) == 2 and segments[0] == "federated-user":
            arn_account, session = found[0] if found else None, segments[1]
        elif not federated and len(segments) == 3 and segments[0] == "assumed-role":
            arn_account, arn_role, session = found[0] if found else None, segments[1], segments[2]
        else:
            kind = "federated-user" if federated else "assumed-role"
            problems.append(f"userIdentity.arn {_clip(arn)!r} is not an {kind} ARN")
    issuer_arn = issuer.arn if issuer and issuer.arn else None
    issuer_account = issuer_name = None
    path = ""
    if issuer_arn:
        wanted = "user/" if federated else "role/"
        found = _arn_parts(issuer_arn, "iam")
        if found and found[1].startswith(wanted):
            issuer_account = found[0]
            head, _, issuer_name = found[1].rpartition("/")
            path = head[len(wanted) - 1 :] + "/"
        else:
            problems.append(f"sessionIssuer.arn {_clip(issuer_arn)!r} is not an IAM {wanted[:-1]} ARN")
    given = issuer.user_name if issuer else None
    name = arn_role or issuer_name or given or ""
    if (arn_role and arn_role != name) or (issuer_name and issuer_name != name) or (given and given != name):
        names = [
            ("userIdentity.arn", arn_role),
            ("sessionIssuer.arn", issuer_name),
            ("sessionIssuer.userName", given),
        ]
        problems.append(_disagreement("names", names))
    issuer_given_account = issuer.account_id if issuer else None
    if (
        (arn_account and arn_account != account)
        or (issuer_account and issuer_account != account)
        or (issuer_given_account and issuer_given_account != account)
    ):
        accounts = [
            ("userIdentity.arn", arn_account),
            ("sessionIssuer.arn", issuer_account),
            ("sessionIssuer.accountId", issuer_given_account),
            ("the record's account", account),
        ]
        problems.append(_disagreement("accounts", accounts))
    principal_id = identity.principal_id
    if principal_id and not federated and session is not None:
        # <role id>:<session name>; the role id is the issuer's principal id.
        role_id, _, named = principal_id.partition(":")
        if named != session:
            problems.append(
                f"principalId {_clip(principal_id)!r} names another session than {_clip(session)!r}"
            )
        if issuer and issuer.principal_id and issuer.principal_id != role_id:
            problems.append(
                f"principalId {_clip(principal_id)!r} is not a session of {_clip(issuer.principal_id)!r}"
            )
    problems += [bad for bad in (_bad_name(name), _bad_account(account)) if bad]
    if session is not None and not SESSION_NAME.match(session):
        problems.append(f"session name {_clip(session, 80)!r} is not one AWS issues")
    if federated:
        kind = PrincipalKind.FEDERATED
    elif name.startswith(IDENTITY_CENTER_ROLE_PREFIX) or path.startswith(IDENTITY_CENTER_PATH):
        kind = PrincipalKind.IDENTITY_CENTER
    elif path.startswith(SERVICE_LINKED_PATH):
        kind = PrincipalKind.SERVICE_LINKED
    else:
        kind = PrincipalKind.ROLE
    conflict = _conflict(problems)
    context = identity.session_context
    return Principal(
        kind,
        arn,
        account,
        name,
        issuer_arn,
        session,
        identity.access_key_id,
        conflict=conflict,
        source_identity=context.source_identity if context else None,
        principal_id=principal_id if session is not None and not federated else None,
        session_issued=context.attributes.creation_date if context and context.attributes else None,
    )


def api_call_of(
    record: CloudTrailRecord,
    envelope: CloudTrailEnvelope | None = None,
    kind: RecordKind = RecordKind.API_CALL,
    content: Mapping[str, object] | None = None,
) -> ApiCall:
    """The call a record describes. What the record leaves out comes from its envelope (or, for the event
    id of a bare record, a hash of its `content`), and is named in `gaps`. This runs for every event: the
    common case (nothing left out, a typed identity) takes no detour."""
    envelope_account = envelope.account if envelope is not None else None
    identity = record.user_identity
    account = (
        record.recipient_account_id or envelope_account or (identity.account_id if identity else None) or ""
    )
    event_id, event_time, region = record.event_id, record.event_time, record.aws_region
    gaps: tuple[str, ...] = ()
    if not event_id or not region or not isinstance(event_time, datetime):
        event_id, event_time, region, gaps = _filled(record, envelope, content)
    if identity is not None and identity.type and kind is not RecordKind.SERVICE_EVENT:
        principal = _principal_cached(identity, account)
    else:
        principal, gap = _aws_or_nobody(record, identity, account, kind)
        gaps += gap
    response = record.response_elements
    additional = record.additional_event_data
    # Positional: the keyword call costs a microsecond an event for twenty fields (benchmarks/).
    return ApiCall(
        event_id,
        event_time,
        record.event_source,
        record.event_name,
        region,
        account,
        principal,
        record.request_parameters or {},
        record.error_code or None,
        record.error_message,
        record.source_ip_address,
        record.user_agent,
        record.read_only,
        record.request_id,
        envelope_account,
        envelope.source if envelope is not None else None,
        _response_of(response) if response is not None else None,
        {"MFAUsed": additional.mfa_used}
        if additional is not None and additional.mfa_used is not None
        else None,
        kind,
        gaps,
        _resource_arns(record.resources) if record.resources else (),
    )


def _resource_arns(resources: list[Any]) -> tuple[str, ...]:
    # "ARN" as CloudTrail writes it; "arn" as some tools that store and forward records write it
    # (panther-analysis's samples: a third of theirs with resources).
    found = (r.get("ARN", r.get("arn")) for r in resources[:20] if isinstance(r, dict))
    return tuple(arn[:2048] for arn in found if isinstance(arn, str))


def _response_of(response: ResponseElements) -> dict[str, object] | None:
    """The few response fields anything reads: a sign-in's outcome, a deletion's date."""
    found: dict[str, object] = {}
    if response.console_login is not None:
        found["ConsoleLogin"] = response.console_login
    if response.deletion_date is not None:
        found["deletionDate"] = response.deletion_date
    return found or None


def _filled(
    record: CloudTrailRecord, envelope: CloudTrailEnvelope | None, content: Mapping[str, object] | None
) -> tuple[str, datetime, str, tuple[str, ...]]:
    """eventID, eventTime and awsRegion, from the envelope where the record leaves them out."""
    gaps: list[str] = []
    event_id = record.event_id
    if not event_id:
        gaps.append("eventID")
        event_id = envelope.id if envelope is not None else _content_id(content or {})
    event_time = record.event_time
    if not isinstance(event_time, datetime):
        gaps.append("eventTime")
        # A bare record without a time: the time it was read, the only one there is.
        event_time = envelope.time if envelope is not None else datetime.now(UTC)
    region = record.aws_region
    if not region:
        gaps.append("awsRegion")
        region = envelope.region if envelope is not None else ""
    return event_id, event_time, region, tuple(gaps)


def _aws_or_nobody(
    record: CloudTrailRecord, identity: UserIdentity | None, account: str, kind: RecordKind
) -> tuple[Principal, tuple[str, ...]]:
    """The principal of a service event, of an AWS-internal call, or of a record without userIdentity."""
    if kind is RecordKind.SERVICE_EVENT:
        # AWS acting on its own, whatever identity the record names: never an agent, never contained.
        invoked_by = (identity.invoked_by if identity else None) or record.event_source
        kind_name = identity.type if identity else ""
        return Principal(PrincipalKind.SERVICE, "", account, invoked_by, identity_type=kind_name), ()
    if identity is None:
        return Principal(PrincipalKind.UNKNOWN, "", account, ""), ("userIdentity",)
    # AWS's own calls may leave the type out ({"accountId", "invokedBy": "AWS Internal"}): AWS acting,
    # never an agent. An identity with neither a type nor an invoking service describes nobody.
    if not identity.invoked_by:
        raise InvalidEventError(
            "detail.userIdentity: neither a type nor the AWS service that invoked the call"
        )
    return Principal(PrincipalKind.SERVICE, identity.arn or "", account, identity.invoked_by), (
        "userIdentity.type",
    )


def _content_id(content: Mapping[str, object]) -> str:
    """A stable id for a record that has none: the same record, delivered twice, gets the same id."""
    import hashlib  # rare: a bare record without an id

    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def forgery(call: ApiCall) -> str | None:
    """Why an event must not be believed, or None: its envelope contradicts its record (EventBridge sets the
    envelope's account to the account that put the event on the bus: a record naming another account was
    forged or mangled), or its record names two principals at once."""
    if call.delivered_from is None:
        return (
            "a bare CloudTrail record, not an EventBridge event: only EventBridge delivers to the responder, "
            "so it was handed over directly; refused, nothing was done"
        )
    if not call.delivered_from.startswith("aws."):
        return (
            f"event source {_clip(call.delivered_from)!r} is not AWS: EventBridge lets only AWS put aws.* "
            "sources, so this was put by someone else; refused as forged, nothing was done"
        )
    if call.principal.conflict:
        return f"{call.principal.conflict}: refused as forged; nothing was done"
    if call.delivered_by and call.account and call.delivered_by != call.account:
        return (
            f"event put on the bus by account {call.delivered_by} names account {call.account}: refused as "
            "forged; nothing was done"
        )
    return None


# CloudTrail's eventType, lower-cased (older sign-in records spell it AwsConsoleSignin), for a record read
# without its envelope (from a log file). Any other eventType (AwsVpceEvent, network activity through a VPC
# endpoint) describes a call; Insights describe none.
_EVENT_TYPES = {
    "awsapicall": RecordKind.API_CALL,
    "awsconsoleaction": RecordKind.CONSOLE_ACTION,
    "awsconsolesignin": RecordKind.SIGN_IN,
    "awsserviceevent": RecordKind.SERVICE_EVENT,
    "awscloudtrailinsight": RecordKind.OTHER,
}


def _kind_of_detail_type(detail_type: object) -> RecordKind:
    kind = DETAIL_TYPES.get(detail_type) if isinstance(detail_type, str) else None
    if kind is not None:
        return kind
    if isinstance(detail_type, str) and detail_type.endswith(OTHER_DETAIL_TYPES_END):
        return RecordKind.OTHER
    raise InvalidEventError(
        f"detail-type is {_clip(detail_type)!r}, not a CloudTrail record (expected one of "
        f"{', '.join(repr(t) for t in CLOUDTRAIL_DETAIL_TYPES)}, or another '... via CloudTrail')"
    )


def _kind_of_record(record: Mapping[str, object]) -> RecordKind:
    return kind_of_event_type(record.get("eventType"))


def kind_of_event_type(event_type: object) -> RecordKind:
    """What a record read without its envelope is, by its eventType (none, or one unknown: a call)."""
    if not isinstance(event_type, str):
        return RecordKind.API_CALL
    return _EVENT_TYPES.get(event_type.lower(), RecordKind.API_CALL)


def _named(record: object, fallback_name: str) -> object:
    """A record of another kind (an Insight) may name no call at its top: it is named after the call its
    details are about, or after its kind, so that it can be read (and classified benign)."""
    if not isinstance(record, Mapping) or ("eventSource" in record and "eventName" in record):
        return record
    details = record.get("insightDetails")
    details = details if isinstance(details, Mapping) else {}
    return {
        **record,
        "eventSource": record.get("eventSource") or details.get("eventSource") or "cloudtrail.amazonaws.com",
        "eventName": record.get("eventName") or details.get("eventName") or fallback_name,
    }


def parse_event(event: object) -> ApiCall:
    """An EventBridge envelope or a bare CloudTrail record, as decoded JSON, to an ApiCall.

    Raises InvalidEventError, saying what is wrong, for anything else.
    """
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"expected a JSON object, got {type(event).__name__}")
    try:
        if "detail" in event or "detail-type" in event:
            kind = _kind_of_detail_type(event.get("detail-type"))
            if kind is RecordKind.OTHER:
                event = {**event, "detail": _named(event.get("detail"), str(event.get("detail-type")))}
            try:
                envelope = CloudTrailEnvelope.model_validate(event)
            except ValidationError as exc:
                raise InvalidEventError(_describe(exc, "")) from None
            return api_call_of(envelope.detail, envelope, kind)
        if "eventSource" in event or "eventName" in event or "userIdentity" in event or "eventType" in event:
            kind = _kind_of_record(event)
            record = _named(event, str(event.get("eventType"))) if kind is RecordKind.OTHER else event
            try:
                return api_call_of(CloudTrailRecord.model_validate(record), None, kind, event)
            except ValidationError as exc:
                raise InvalidEventError(_describe(exc, "")) from None
    except RecursionError:
        raise InvalidEventError("event is nested too deeply to be a CloudTrail record") from None
    keys = ", ".join(sorted(str(k) for k in list(event)[:8])) or "none"
    raise InvalidEventError(
        f"neither an EventBridge envelope (detail-type, detail) nor a CloudTrail record "
        f"(eventSource, eventName, userIdentity); top-level keys: {_clip(keys)}"
    )


def _envelope_from_json(text: str) -> ApiCall | None:
    """The fast path: an EventBridge CloudTrail envelope, parsed and validated by pydantic-core in one pass
    from its text (no Python objects for what the model ignores). None for anything else."""
    try:
        envelope = CloudTrailEnvelope.model_validate_json(text)
    except ValidationError:
        return None
    kind = DETAIL_TYPES.get(envelope.detail_type)
    if kind is None:
        return None
    try:
        return api_call_of(envelope.detail, envelope, kind)
    except InvalidEventError:
        return None  # the slow path says why, for this line alone


def parse_line(text: str) -> ApiCall:
    """One JSON document as text to an ApiCall: the fast path for envelopes; anything else goes through
    json.loads and parse_event, for the same result and the same errors."""
    call = _envelope_from_json(text)
    if call is not None:
        return call
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidEventError(f"not JSON ({_clip(exc, 120)})") from None
    return parse_event(document)


def _clip(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --- files: what `guardrail classify` reads ------------------------------------------------------------

EVENT_FILE_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def event_files(paths: list[Path], suffixes: tuple[str, ...] = EVENT_FILE_SUFFIXES) -> Iterator[Path]:
    """The files named, and every event file below the directories named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
        else:
            yield path


def read_documents(path: Path, *, parse: bool = False) -> Iterator[tuple[str, object]]:
    """(location, decoded JSON) for each event document in a file.

    A file is one JSON document (an envelope, a record, or a CloudTrail log file with ``Records``) or
    JSON Lines, optionally gzipped. A log file yields each of its records. A line that does not decode
    yields an InvalidEventError in place of the document, so the caller can report it and go on.
    `parse`: a JSON Lines line that is an EventBridge envelope comes already parsed, as an ApiCall
    (pydantic-core reads it in one pass). CloudTrail's log files have a faster reader still, for the
    operator's tools: operate/logfiles.py.
    """
    yield from documents_in(str(path), path.read_bytes(), parse=parse)


def documents_in(name: str, raw: bytes, *, parse: bool = False) -> Iterator[tuple[str, object]]:
    """read_documents for bytes already read (a file, or an S3 object named `name`)."""
    yield from documents_of(name, text_of(name, raw), parse=parse)


def text_of(name: str, raw: bytes) -> str:
    """A file's bytes as text, gunzipped if they are gzip (InvalidEventError if they are not readable)."""
    return decoded(name, gunzipped(name, raw))


def gunzipped(name: str, raw: bytes) -> bytes:
    """A file's bytes, gunzipped if they are gzip (InvalidEventError if they are not readable)."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise InvalidEventError(f"{name}: not a readable gzip file ({exc})") from None


def decoded(name: str, raw: bytes) -> str:
    """A file's (gunzipped) bytes as text (InvalidEventError if they are not UTF-8)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def documents_of(name: str, text: str, *, parse: bool = False) -> Iterator[tuple[str, object]]:
    """documents_in for a file's text."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise InvalidEventError(f"{name}: JSON nested too deeply") from None
    except json.JSONDecodeError:
        yield from _json_lines(name, text, parse)
        return
    yield from _expand(name, document)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a file becomes records and they are classified: their
    objects form no cycles, and the collections their allocations trigger would scan them all for none,
    again and again (about half the parse of a file: benchmarks/backtest_throughput.py). Nested pauses
    leave it to the outermost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def call_of(document: object) -> ApiCall:
    """What read_documents yields, as a call: an envelope already parsed on the fast path, a document
    parsed now, or the InvalidEventError that stands in for an unreadable line, raised."""
    if isinstance(document, InvalidEventError):
        raise document
    return document if isinstance(document, ApiCall) else parse_event(document)


def _json_lines(path: str, text: str, parse_envelopes: bool) -> Iterator[tuple[str, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if parse_envelopes and (call := _envelope_from_json(line)) is not None:
            yield where, call
            continue
        try:
            document = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield where, InvalidEventError(f"{where}: not JSON ({_clip(exc, 120)})")
            continue
        yield from _expand(where, document)


def _expand(where: str, document: object) -> Iterator[tuple[str, object]]:
    if isinstance(document, Mapping) and "Records" in document:
        records = document["Records"]
        if not isinstance(records, list):
            yield where, InvalidEventError(f"{where}: Records is {type(records).__name__}, expected a list")
            return
        for index, record in enumerate(records):
            yield f"{where}#Records[{index}]", record
    else:
        yield where, document
