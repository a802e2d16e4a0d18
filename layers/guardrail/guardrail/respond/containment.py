"""Containment: what to do to stop an agent, and doing it.

Planning is pure: from a verdict, the settings and the responder's own identity it decides the target
(a role or a user), the actions, or why nothing can be done here and what a human must do instead.
Each action declares the IAM permissions it needs to apply and to undo itself; a test holds
template.yaml to exactly those.

An explicit Deny in an identity policy beats every Allow and is evaluated on every request, so a deny-all
inline policy stops the agent, including sessions issued before it. IAM is eventually consistent: AWS
says a change can take a few minutes to be seen everywhere (seconds, in practice). We do not sleep on it;
the incident says so.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from guardrail.errors import GuardrailError
from guardrail.model import ContainmentScope, Decision, Principal, PrincipalKind
from guardrail.respond.state.table import bounded
from guardrail.settings import ContainmentMode, Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_iam import IAMClient

    from guardrail.detect.verdict import Verdict

DENY_ALL_POLICY = "GuardrailEmergencyDenyAll"
# AWS's own managed deny-all: the fallback layer (commercial partition, like the template's ARNs).
AWS_DENY_ALL_POLICY_ARN = "arn:aws:iam::aws:policy/AWSDenyAll"
REVOKE_SESSIONS_POLICY = "GuardrailRevokeOlderSessions"
DENY_SESSION_POLICY = "GuardrailDenySession"
INCIDENT_TAG = "guardrail:incident"
CONTAINED_AT_TAG = "guardrail:contained-at"
REVOKE_SESSIONS_CAVEAT = (
    "Revoking older sessions denies only credentials issued before the containment: a runtime that can "
    "assume the role again gets a fresh session that works. Use deny_all (the default) to stop it."
)
CONSISTENCY_NOTE = (
    "IAM is eventually consistent: a policy change can take a few seconds (AWS says up to a few minutes) "
    "to apply everywhere. Check CloudTrail for calls by the agent after the containment time."
)


class ContainmentFailed(GuardrailError):
    """An IAM write of the containment failed after botocore's retries; the agent may still be active."""

    def __init__(self, message: str, records: list[ActionRecord]) -> None:
        super().__init__(message)
        self.records = records


class TargetKind(StrEnum):
    ROLE = "role"
    USER = "user"
    IDENTITY_CENTER = "identity-center"  # one Identity Center user's sessions of a permission set's role


# The customer-managed policy every account carries (template.yaml, member.yaml) and the agents' permission
# sets reference: an inert placeholder until an incident writes a user's session id into it.
IDENTITY_CENTER_POLICY = "GuardrailIdentityCenterDeny"
IDENTITY_CENTER_PATH = "/guardrail/"
IDENTITY_CENTER_SID = "GuardrailIdentityCenterSessions"
IDENTITY_CENTER_PLACEHOLDER = "guardrail-placeholder:no-session-has-this-id"
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace not counted
POLICY_VERSIONS = 5


def identity_center_policy_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:policy{IDENTITY_CENTER_PATH}{IDENTITY_CENTER_POLICY}"


IDENTITY_STORE_SID = "GuardrailIdentityCenterUsers"
USERID, STORE_USER = "aws:userid", "identitystore:userId"
_SIDS = {USERID: IDENTITY_CENTER_SID, STORE_USER: IDENTITY_STORE_SID}


def identity_center_document(userids: list[str], store_ids: list[str] | None = None) -> dict[str, Any]:
    """The prepared policy: denies everything to the listed sessions (aws:userid), nothing when empty; and,
    where the identity store was asked, to the listed users (identitystore:userId) in any session."""
    document = deny_everything(
        IDENTITY_CENTER_SID, {"StringEquals": {USERID: userids or [IDENTITY_CENTER_PLACEHOLDER]}}
    )
    if store_ids:
        document["Statement"] += deny_everything(
            IDENTITY_STORE_SID, {"StringEquals": {STORE_USER: store_ids}}
        )["Statement"]
    return document


def denied(document: Any, key: str = USERID) -> list[str]:
    """What the prepared policy denies under one condition key (the placeholder is nothing)."""
    for statement in document.get("Statement", []) if isinstance(document, dict) else []:
        if isinstance(statement, dict) and statement.get("Sid") == _SIDS[key]:
            values = statement.get("Condition", {}).get("StringEquals", {}).get(key, [])
            values = [values] if isinstance(values, str) else list(values)
            return [v for v in values if v != IDENTITY_CENTER_PLACEHOLDER]
    return []


def denied_userids(document: Any) -> list[str]:
    """The session ids the prepared policy denies."""
    return denied(document, USERID)


# What a session-scoped deny may key on: a session's source identity (AWS allows 2-64 of these characters),
# or aws:userid of a role session, <role id>:<session name> (role ids start AROA).
_SOURCE_IDENTITY = re.compile(r"^[\w+=,.@-]{2,64}$")
_ROLE_SESSION_ID = re.compile(r"^AROA[A-Z0-9]{8,124}:[\w+=,.@-]{2,64}$")


@dataclass(frozen=True, slots=True)
class SessionRef:
    """One session of a role, as a session-scoped deny names it: by its source identity when it has one (set
    at AssumeRole, unchangeable inside the session, kept through role chaining), else by aws:userid and only
    for credentials issued before the containment."""

    source_identity: str | None = None
    userid: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> SessionRef | None:
        """The session a call was made in, or None when the record names none a policy can key on."""
        if principal.source_identity and _SOURCE_IDENTITY.match(principal.source_identity):
            return cls(source_identity=principal.source_identity)
        if principal.principal_id and _ROLE_SESSION_ID.match(principal.principal_id):
            return cls(userid=principal.principal_id)
        return None

    def condition(self, incident: IncidentRef) -> dict[str, Any]:
        if self.source_identity:
            return {"StringEquals": {"aws:SourceIdentity": self.source_identity}}
        return {
            "StringEquals": {"aws:userid": self.userid},
            "DateLessThan": {"aws:TokenIssueTime": incident.revoke_cutoff_iso},
        }

    def includes(self, principal: Principal, incident: IncidentRef) -> bool:
        """Whether a call by `principal` is one this deny stops: the same source identity, or the same
        session issued before the containment (a late delivery of its own calls)."""
        if self.source_identity:
            return principal.source_identity == self.source_identity
        if principal.principal_id != self.userid:
            return False
        issued = principal.session_issued or ""
        return bool(issued) and issued < incident.revoke_cutoff_iso

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("source_identity", self.source_identity), ("userid", self.userid)) if v}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SessionRef:
        return cls(raw.get("source_identity"), raw.get("userid"))

    def describe(self) -> str:
        if self.source_identity:
            return f"sessions with source identity {self.source_identity}"
        return f"session {self.userid} (credentials issued before the containment)"


@dataclass(frozen=True, slots=True)
class Target:
    """The IAM entity a containment acts on: the role behind a session, or an IAM user; with `session`, only
    that session of the role."""

    kind: TargetKind
    name: str
    account: str
    session: SessionRef | None = None
    member: str | None = None  # an Identity Center user's name (the session name AWS gives its sessions)

    @property
    def key(self) -> str:
        """The identity of the target in the state table. Path-free: names are unique in an account. An
        Identity Center user is keyed apart from any role: one incident per user and permission set."""
        if self.kind is TargetKind.IDENTITY_CENTER:
            return f"arn:aws:iam::{self.account}:{self.kind.value}/{self.name}/{self.member}"
        return f"arn:aws:iam::{self.account}:{self.kind.value}/{self.name}"

    @classmethod
    def from_arn(cls, arn: str) -> Target:
        """A role, user or assumed-role ARN as an operator would paste it."""
        match = re.match(
            r"^arn:aws[\w-]*:(iam|sts)::(\d{12}):(role|user|assumed-role|identity-center)/(.+)$", arn.strip()
        )
        if not match:
            raise GuardrailError(
                f"{arn!r} is not a role, user or assumed-role ARN (arn:aws:iam::123456789012:role/Name)"
            )
        _service, account, kind, rest = match.groups()
        parts = rest.split("/")
        if kind == "assumed-role" and parts[0].startswith("AWSReservedSSO_") and len(parts) > 1:
            return cls(TargetKind.IDENTITY_CENTER, parts[0], account, member=parts[1])
        if kind == "identity-center" and len(parts) > 1:
            return cls(TargetKind.IDENTITY_CENTER, parts[-2], account, member=parts[-1])
        if kind == "assumed-role":
            return cls(TargetKind.ROLE, parts[0], account)
        return cls(TargetKind(kind), parts[-1], account)  # the last segment: paths do not matter


@dataclass(frozen=True, slots=True)
class IncidentRef:
    """What actions need to know of the incident they act for."""

    id: str
    opened_at: datetime

    @property
    def sid(self) -> str:
        # Statement ids are alphanumeric: the console shows this on the role, naming the incident.
        return "GuardrailIncident" + re.sub(r"[^A-Za-z0-9]", "", self.id)

    @property
    def opened_at_iso(self) -> str:
        return self.opened_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def revoke_cutoff_iso(self) -> str:
        """The containment time rounded up to a whole second: cut down, a session issued earlier in that
        same second would be newer than the cutoff and survive. A session issued in the rest of that second,
        after the containment, is refused too: the cost falls on the agent's side."""
        moment = self.opened_at.astimezone(UTC)
        if moment.microsecond:
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ActionRecord:
    """One action as done (or undone): enough to undo it exactly and to audit it."""

    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    at: str = ""
    ms: float | None = None
    error: str | None = None

    def to_item(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "request_ids": self.request_ids,
            "at": self.at,
            "ms": self.ms,
            "error": self.error,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ActionRecord:
        return cls(
            action=str(item["action"]),
            target=str(item["target"]),
            details=dict(item.get("details") or {}),
            request_ids=[str(r) for r in item.get("request_ids") or []],
            at=str(item.get("at") or ""),
            ms=float(item["ms"]) if item.get("ms") is not None else None,
            error=item.get("error"),
        )


def deny_everything(sid: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    """One explicit Deny of every action on every resource (to whom the condition names, if any): the
    shape of every policy a containment writes."""
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*"}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def deny_all_document(incident: IncidentRef) -> dict[str, Any]:
    return deny_everything(incident.sid)


def revoke_older_sessions_document(incident: IncidentRef) -> dict[str, Any]:
    """Deny every request made with credentials issued before the containment time (the console's
    "Revoke active sessions", named for the incident)."""
    return deny_everything(incident.sid, {"DateLessThan": {"aws:TokenIssueTime": incident.revoke_cutoff_iso}})


def _request_id(response: Any) -> str:
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ContainmentAction(ABC):
    """One IAM change that stops an agent, and its exact inverse."""

    name: ClassVar[str]
    target_kind: ClassVar[TargetKind]
    permissions: ClassVar[tuple[str, ...]]
    undo_permissions: ClassVar[tuple[str, ...]]
    # A deny layer: while one of these holds, the agent is stopped. The others (tags, keys) add to it.
    stops_agent: ClassVar[bool] = False
    # What to do instead when this action fails: another layer that stops the agent the same way.
    fallback: ClassVar[ContainmentAction | None] = None

    @abstractmethod
    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord: ...

    @abstractmethod
    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord: ...

    # What checking that the action is still in place calls (read-only).
    verify_permissions: ClassVar[tuple[str, ...]] = ()

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        """What is no longer as this action left it, or None. An action with nothing to keep (a tag) is None."""
        return None

    def describe(self, target: Target, incident: IncidentRef) -> ActionRecord:
        """What apply would do, without doing it: the dry-run record."""
        return ActionRecord(self.name, target.key, details={"dry_run": True}, at=_now_iso())

    def _undone(self, record: ActionRecord, iam: IAMClient, call: Callable[[], Any]) -> ActionRecord:
        """Run an undo call; what someone already removed by hand is recorded as such, not as a failure."""
        try:
            response = call()
        except iam.exceptions.NoSuchEntityException:
            return ActionRecord(self.name, record.target, {"already_absent": True}, at=_now_iso())
        return ActionRecord(
            self.name, record.target, dict(record.details), [_request_id(response)], _now_iso()
        )


class _InlinePolicy(ContainmentAction):
    """An inline deny policy on the target; subclasses say which document, and role or user."""

    policy_name: ClassVar[str]

    @abstractmethod
    def document(self, incident: IncidentRef) -> dict[str, Any]: ...

    @abstractmethod
    def _put(self, iam: IAMClient, name: str, policy_name: str, document: str) -> Any: ...

    @abstractmethod
    def _delete(self, iam: IAMClient, name: str, policy_name: str) -> Any: ...

    @abstractmethod
    def _get(self, iam: IAMClient, name: str, policy_name: str) -> Any: ...

    def _found(self, record: ActionRecord, iam: IAMClient) -> tuple[Any, str | None]:
        """The policy as IAM holds it on the target now, or why there is none."""
        name = Target.from_arn(record.target).name
        try:
            document = self._get(iam, name, self.policy_name)["PolicyDocument"]
        except iam.exceptions.NoSuchEntityException:
            return None, f"{self.policy_name} was removed from {record.target}"
        if isinstance(document, str):  # botocore decodes it; a raw client would not
            document = json.loads(unquote(document))
        return document, None

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        document, missing = self._found(record, iam)
        if missing is not None:
            return missing
        if not _denies_as_much(document, self.document(incident)):
            return f"{self.policy_name} on {record.target} was rewritten"
        return None

    def describe(self, target: Target, incident: IncidentRef) -> ActionRecord:
        record = super().describe(target, incident)
        record.details.update(policy_name=self.policy_name, policy=self.document(incident))
        return record

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        response = self._put(iam, target.name, self.policy_name, json.dumps(self.document(incident)))
        return ActionRecord(
            self.name, target.key, {"policy_name": self.policy_name}, [_request_id(response)], _now_iso()
        )

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        name = Target.from_arn(record.target).name
        return self._undone(record, iam, lambda: self._delete(iam, name, record.details["policy_name"]))


def _denies_as_much(found: Any, written: dict[str, Any]) -> bool:
    """Whether a policy found on the principal denies at least what the containment wrote. The statement
    id may name another incident (invocations racing for one principal each write theirs before redoing
    it under the winner's), and a revoke cutoff may be later (a later cutoff revokes more sessions); any
    other difference is a rewrite."""
    if not isinstance(found, dict) or found.get("Version") != written["Version"]:
        return False
    statements, expected = found.get("Statement"), written["Statement"]
    if not isinstance(statements, list) or len(statements) != len(expected):
        return False
    for have, want in zip(statements, expected, strict=True):
        if not isinstance(have, dict):
            return False
        unconditioned = ("Sid", "Condition")
        if {k: v for k, v in have.items() if k not in unconditioned} != {
            k: v for k, v in want.items() if k not in unconditioned
        }:
            return False
        if "Condition" not in want:
            if "Condition" in have:
                return False
            continue
        cutoff = want["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        condition = have.get("Condition")
        if not (isinstance(condition, dict) and set(condition) == {"DateLessThan"}):
            return False
        dates = condition["DateLessThan"]
        if not (isinstance(dates, dict) and set(dates) == {"aws:TokenIssueTime"}):
            return False
        if not isinstance(dates["aws:TokenIssueTime"], str) or dates["aws:TokenIssueTime"] < cutoff:
            return False
    return True


class _AttachDenyAll(ContainmentAction):
    """AWS's managed AWSDenyAll attached to the target: the fallback when an inline deny cannot be written.
    The inline-policy quota (2,048 characters for a user, 10,240 for a role) is the agent's to fill; an
    attached managed policy does not count against it, and AWS owns the document, so nobody can edit it."""

    stops_agent = True

    @abstractmethod
    def _attach(self, iam: IAMClient, name: str) -> Any: ...

    @abstractmethod
    def _detach(self, iam: IAMClient, name: str) -> Any: ...

    @abstractmethod
    def _attached(self, iam: IAMClient, name: str) -> list[str]: ...

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        if AWS_DENY_ALL_POLICY_ARN in self._attached(iam, Target.from_arn(record.target).name):
            return None
        return f"AWSDenyAll was detached from {record.target}"

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        response = self._attach(iam, target.name)
        details = {"policy_arn": AWS_DENY_ALL_POLICY_ARN}
        return ActionRecord(self.name, target.key, details, [_request_id(response)], _now_iso())

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        name = Target.from_arn(record.target).name
        return self._undone(record, iam, lambda: self._detach(iam, name))


class AttachRoleDenyAll(_AttachDenyAll):
    name = "attach_role_deny_all"
    target_kind = TargetKind.ROLE
    permissions = ("iam:AttachRolePolicy",)
    undo_permissions = ("iam:DetachRolePolicy",)
    verify_permissions = ("iam:ListAttachedRolePolicies",)

    def _attached(self, iam: IAMClient, name: str) -> list[str]:
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        return [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]]

    def _attach(self, iam: IAMClient, name: str) -> Any:
        return iam.attach_role_policy(RoleName=name, PolicyArn=AWS_DENY_ALL_POLICY_ARN)

    def _detach(self, iam: IAMClient, name: str) -> Any:
        return iam.detach_role_policy(RoleName=name, PolicyArn=AWS_DENY_ALL_POLICY_ARN)


class AttachUserDenyAll(_AttachDenyAll):
    name = "attach_user_deny_all"
    target_kind = TargetKind.USER
    permissions = ("iam:AttachUserPolicy",)
    undo_permissions = ("iam:DetachUserPolicy",)
    verify_permissions = ("iam:ListAttachedUserPolicies",)

    def _attached(self, iam: IAMClient, name: str) -> list[str]:
        pages = iam.get_paginator("list_attached_user_policies").paginate(UserName=name)
        return [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]]

    def _attach(self, iam: IAMClient, name: str) -> Any:
        return iam.attach_user_policy(UserName=name, PolicyArn=AWS_DENY_ALL_POLICY_ARN)

    def _detach(self, iam: IAMClient, name: str) -> Any:
        return iam.detach_user_policy(UserName=name, PolicyArn=AWS_DENY_ALL_POLICY_ARN)


class PutRoleDenyAll(_InlinePolicy):
    name = "put_role_deny_all"
    target_kind = TargetKind.ROLE
    permissions = ("iam:PutRolePolicy",)
    undo_permissions = ("iam:DeleteRolePolicy",)
    verify_permissions = ("iam:GetRolePolicy",)
    policy_name = DENY_ALL_POLICY
    stops_agent = True
    fallback = AttachRoleDenyAll()

    def document(self, incident: IncidentRef) -> dict[str, Any]:
        return deny_all_document(incident)

    def _put(self, iam: IAMClient, name: str, policy_name: str, document: str) -> Any:
        return iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=document)

    def _delete(self, iam: IAMClient, name: str, policy_name: str) -> Any:
        return iam.delete_role_policy(RoleName=name, PolicyName=policy_name)

    def _get(self, iam: IAMClient, name: str, policy_name: str) -> Any:
        return iam.get_role_policy(RoleName=name, PolicyName=policy_name)


class PutRoleRevokeOlderSessions(PutRoleDenyAll):
    name = "put_role_revoke_older_sessions"
    policy_name = REVOKE_SESSIONS_POLICY

    def document(self, incident: IncidentRef) -> dict[str, Any]:
        return revoke_older_sessions_document(incident)


def deny_session_document(incident: IncidentRef, session: SessionRef) -> dict[str, Any]:
    """Deny everything to one session of the role (see SessionRef)."""
    return deny_everything(incident.sid, session.condition(incident))


class PutRoleDenySession(PutRoleDenyAll):
    """A deny on the role that names one session: the other sessions of a shared role keep working. If it
    cannot be written (the inline quota full) the fallback, AWSDenyAll, stops the whole role."""

    name = "put_role_deny_session"
    policy_name = DENY_SESSION_POLICY

    def document(self, incident: IncidentRef) -> dict[str, Any]:
        raise GuardrailError("a session deny needs its session: see document_for")

    def document_for(self, incident: IncidentRef, session: SessionRef) -> dict[str, Any]:
        return deny_session_document(incident, session)

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        if target.session is None:
            raise GuardrailError(f"{target.key}: a session deny without a session")
        document = self.document_for(incident, target.session)
        response = self._put(iam, target.name, self.policy_name, json.dumps(document))
        details = {"policy_name": self.policy_name, "session": target.session.to_dict()}
        return ActionRecord(self.name, target.key, details, [_request_id(response)], _now_iso())

    def describe(self, target: Target, incident: IncidentRef) -> ActionRecord:
        record = ActionRecord(self.name, target.key, details={"dry_run": True}, at=_now_iso())
        if target.session is not None:
            record.details.update(
                policy_name=self.policy_name,
                session=target.session.to_dict(),
                policy=self.document_for(incident, target.session),
            )
        return record

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        document, missing = self._found(record, iam)
        if missing is not None:
            return missing
        expected = self.document_for(incident, SessionRef.from_dict(record.details.get("session") or {}))
        strip = [{k: v for k, v in s.items() if k != "Sid"} for s in expected["Statement"]]
        found = document.get("Statement") if isinstance(document, dict) else None
        if (
            not isinstance(found, list)
            or [{k: v for k, v in s.items() if k != "Sid"} if isinstance(s, dict) else s for s in found]
            != strip
        ):
            return f"{self.policy_name} on {record.target} was rewritten"
        return None

    def restore_target(self, record: ActionRecord) -> Target:
        target = Target.from_arn(record.target)
        return Target(
            target.kind,
            target.name,
            target.account,
            SessionRef.from_dict(record.details.get("session") or {}),
        )


class DenyIdentityCenterUser(ContainmentAction):
    """An Identity Center user's sessions denied in one account, in seconds: the user's session id
    (aws:userid, <role id>:<user name>) added to the prepared customer-managed policy that the agents'
    permission sets reference, as a new default version (no provisioning to wait for). Other users'
    entries stay; the oldest non-default version goes when the five-version quota is reached; release
    removes exactly the entry this added."""

    name = "deny_identity_center_user"
    target_kind = TargetKind.IDENTITY_CENTER
    permissions = (
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
        "iam:ListPolicyVersions",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicyVersion",
    )
    undo_permissions = permissions
    verify_permissions = ("iam:GetPolicy", "iam:GetPolicyVersion")
    stops_agent = True

    def __init__(self, admin: Callable[[str], Any] | None = None, instance_arn: str | None = None) -> None:
        # With a way into Identity Center's administration account, the identity store is asked for the
        # user's id, denied too (identitystore:userId: any session of that user, whatever its name).
        self.admin, self.instance_arn = admin, instance_arn

    def _store_id(self, user: str | None) -> tuple[str | None, str | None]:
        """(the user's identity store id, why it is not known)."""
        if self.admin is None or not user:
            return None, None
        try:
            instances = self.admin("sso-admin").list_instances()["Instances"]
            instance = next((i for i in instances if i["InstanceArn"] == self.instance_arn), instances[0])
            found = self.admin("identitystore").get_user_id(
                IdentityStoreId=instance["IdentityStoreId"],
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": user}
                },
            )
        except Exception as exc:  # the deny by session id holds without it: say why, and go on
            return None, f"{type(exc).__name__}: {exc}"
        return str(found["UserId"]), None

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        userid = target.session.userid if target.session else None
        if not userid:
            raise GuardrailError(f"{target.key}: no session id to deny")
        arn = identity_center_policy_arn(target.account)
        # The session first: the deny is in force before the slower trip to the identity store.
        added, version, request_ids = self._rewrite(iam, arn, {USERID: userid}, add=True)
        details: dict[str, Any] = {"policy_arn": arn, "userid": userid, "added": added, "version_id": version}
        store_id, unknown = self._store_id(target.member)
        if store_id:
            store_added, store_version, more = self._rewrite(iam, arn, {STORE_USER: store_id}, add=True)
            request_ids += more
            if store_added:  # recorded only when this incident added it: release removes only that
                details.update(identity_store_user_id=store_id, version_id=store_version or version)
        if unknown:
            details["identity_store_lookup"] = unknown
        return ActionRecord(self.name, target.key, details, request_ids, _now_iso())

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        userid, arn = record.details.get("userid"), record.details.get("policy_arn")
        store_id = record.details.get("identity_store_user_id")
        # Exactly what this incident added: the session id, the identity store id, either or both.
        entries = {
            **({USERID: str(userid)} if record.details.get("added") and userid else {}),
            **({STORE_USER: str(store_id)} if store_id else {}),
        }
        if not entries or not arn:
            return ActionRecord(self.name, record.target, {"not_added_by_this_incident": True}, at=_now_iso())
        try:
            removed, version, request_ids = self._rewrite(iam, str(arn), entries, add=False)
        except iam.exceptions.NoSuchEntityException:
            return ActionRecord(self.name, record.target, {"already_absent": True}, at=_now_iso())
        details = {"policy_arn": arn, "userid": userid, "removed": removed, "version_id": version}
        return ActionRecord(self.name, record.target, details, request_ids, _now_iso())

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        arn, userid = record.details.get("policy_arn"), record.details.get("userid")
        if not arn or not userid:
            return None
        try:
            document = self._default_document(iam, str(arn))
        except iam.exceptions.NoSuchEntityException:
            return (
                f"{IDENTITY_CENTER_POLICY} was deleted from account {Target.from_arn(record.target).account}"
            )
        if userid in denied_userids(document):
            return None
        return f"{userid} was removed from {IDENTITY_CENTER_POLICY}"

    def restore_target(self, record: ActionRecord) -> Target:
        target = Target.from_arn(record.target)
        session = SessionRef(userid=record.details.get("userid"))
        return Target(target.kind, target.name, target.account, session, target.member)

    @staticmethod
    def _default_document(iam: IAMClient, arn: str) -> Any:
        default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
        return json.loads(unquote(document)) if isinstance(document, str) else document

    def _rewrite(
        self, iam: IAMClient, arn: str, entries: dict[str, str], *, add: bool
    ) -> tuple[bool, str | None, list[str]]:
        """Read the default version, add (or remove) one user's entries (a session id; an identity store id),
        write it as the new default; read back, and try again if a concurrent incident's write replaced
        ours. Returns (whether this call changed it, the version written, the request ids)."""
        request_ids: list[str] = []

        def done(document: Any) -> bool:
            return all((value in denied(document, key)) == add for key, value in entries.items())

        for _attempt_number in range(4):
            current = self._default_document(iam, arn)
            if done(current):
                return bool(request_ids), None, request_ids
            lists = {key: denied(current, key) for key in (USERID, STORE_USER)}
            for key, value in entries.items():
                kept = [v for v in lists[key] if v != value]
                lists[key] = [*kept, value] if add else kept
            text = json.dumps(
                identity_center_document(lists[USERID], lists[STORE_USER]), separators=(",", ":")
            )
            if len(text) > MANAGED_POLICY_LIMIT:
                raise GuardrailError(
                    f"{IDENTITY_CENTER_POLICY} would exceed the {MANAGED_POLICY_LIMIT}-character managed-policy "
                    f"limit with {len(lists[USERID])} sessions: release old incidents, or deny the user by hand"
                )
            versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
            if len(versions) >= POLICY_VERSIONS:
                oldest = min(
                    (v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"]
                )
                deleted = iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
                request_ids.append(_request_id(deleted))
            response = iam.create_policy_version(PolicyArn=arn, PolicyDocument=text, SetAsDefault=True)
            request_ids.append(_request_id(response))
            if done(self._default_document(iam, arn)):
                return True, str(response["PolicyVersion"]["VersionId"]), request_ids
        raise GuardrailError(f"{IDENTITY_CENTER_POLICY} kept changing under concurrent writes: try again")


# What the role in Identity Center's administration account must allow for the fallback (docs/identity-center.md).
IDENTITY_CENTER_ADMIN_PERMISSIONS = (
    "identitystore:GetUserId",  # the user's identity store id, denied beside the session id
    "sso:ListInstances",
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:ListCustomerManagedPolicyReferencesInPermissionSet",
    "sso:GetInlinePolicyForPermissionSet",
    "sso:PutInlinePolicyToPermissionSet",
    "sso:DeleteInlinePolicyFromPermissionSet",
    "sso:ProvisionPermissionSet",
    "sso:DescribePermissionSetProvisioningStatus",
)
PROVISION_WAIT_SECONDS = 20.0  # within the function's time; an unfinished one is retried, said so meanwhile


def provision_permission_set(
    sso: Any,
    instance: str,
    permission_set: str,
    *,
    account: str | None = None,
    wait_seconds: float = PROVISION_WAIT_SECONDS,
    sleep: Any = time.sleep,
) -> str:
    """Provision a permission set (to one account, or every account it is provisioned to) and wait, within
    `wait_seconds`, for the outcome: SUCCEEDED, IN_PROGRESS, or FAILED with AWS's reason."""
    target = (
        {"TargetType": "AWS_ACCOUNT", "TargetId": account}
        if account
        else {"TargetType": "ALL_PROVISIONED_ACCOUNTS"}
    )
    status = sso.provision_permission_set(InstanceArn=instance, PermissionSetArn=permission_set, **target)[
        "PermissionSetProvisioningStatus"
    ]
    waited = 0.0
    while status.get("Status") == "IN_PROGRESS" and waited < wait_seconds:
        sleep(2.0)
        waited += 2.0
        status = sso.describe_permission_set_provisioning_status(
            InstanceArn=instance, ProvisionPermissionSetRequestId=status["RequestId"]
        )["PermissionSetProvisioningStatus"]
    state = str(status.get("Status", "unknown"))
    if state == "FAILED":
        # The usual reason: an account the set is provisioned to has no such policy (deploy the stack there).
        return f"FAILED: {status.get('FailureReason', 'no reason given')}"
    return state


class DenyPermissionSetInline(ContainmentAction):
    """The fallback for a permission set that does not reference the prepared policy: a deny of the user's
    session id merged into the permission set's inline policy (what is there stays), provisioned to the
    session's account, through a role in Identity Center's administration account. Holds only once the
    provisioning succeeded: until then the record says so, and Lambda's retry checks again."""

    name = "deny_permission_set_inline"
    target_kind = TargetKind.IDENTITY_CENTER
    permissions = ()  # no IAM in the agent's account: IDENTITY_CENTER_ADMIN_PERMISSIONS, in the admin account
    undo_permissions = ()
    stops_agent = True

    def __init__(
        self,
        admin: Callable[[str], Any] | None = None,
        instance_arn: str | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.admin, self.instance_arn, self.sleep = admin, instance_arn, sleep

    def _sso(self) -> Any:
        if self.admin is None:
            raise GuardrailError("no role in Identity Center's administration account is configured")
        return self.admin("sso-admin")

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        userid = target.session.userid if target.session else None
        if not userid:
            raise GuardrailError(f"{target.key}: no session id to deny")
        sso = self._sso()
        instance, permission_set = self._find(sso, target.name)
        details: dict[str, Any] = {"instance_arn": instance, "permission_set_arn": permission_set}
        references = sso.list_customer_managed_policy_references_in_permission_set(
            InstanceArn=instance, PermissionSetArn=permission_set
        ).get("CustomerManagedPolicyReferences", [])
        if any(
            r.get("Name") == IDENTITY_CENTER_POLICY and r.get("Path", "/") == IDENTITY_CENTER_PATH
            for r in references
        ):
            # The prepared policy holds for this permission set: nothing to add here.
            return ActionRecord(
                self.name, target.key, {**details, "covered_by_reference": True}, at=_now_iso()
            )
        document = self._inline(sso, instance, permission_set)
        # One statement per user: an earlier incident's (a raced one, redone under the winner) is replaced.
        statements = [
            s
            for s in document.get("Statement", [])
            if s.get("Sid") != incident.sid
            and not (
                str(s.get("Sid", "")).startswith("GuardrailIncident")
                and s.get("Condition") == {"StringEquals": {"aws:userid": userid}}
            )
        ]
        statements += deny_everything(incident.sid, {"StringEquals": {"aws:userid": userid}})["Statement"]
        merged = {"Version": document.get("Version", "2012-10-17"), "Statement": statements}
        sso.put_inline_policy_to_permission_set(
            InstanceArn=instance, PermissionSetArn=permission_set, InlinePolicy=json.dumps(merged)
        )
        status = provision_permission_set(
            sso, instance, permission_set, account=target.account, sleep=self.sleep
        )
        details.update(sid=incident.sid, userid=userid, provisioning=status)
        error = (
            None if status == "SUCCEEDED" else f"provisioning {status}: the inline deny is not in force yet"
        )
        return ActionRecord(self.name, target.key, details, at=_now_iso(), error=error)

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        details = record.details
        if details.get("covered_by_reference") or not details.get("sid"):
            return ActionRecord(self.name, record.target, {"nothing_added": True}, at=_now_iso())
        sso = self._sso()
        instance, permission_set = str(details["instance_arn"]), str(details["permission_set_arn"])
        document = self._inline(sso, instance, permission_set)
        kept = [s for s in document.get("Statement", []) if s.get("Sid") != details["sid"]]
        if kept:
            sso.put_inline_policy_to_permission_set(
                InstanceArn=instance,
                PermissionSetArn=permission_set,
                InlinePolicy=json.dumps({**document, "Statement": kept}),
            )
        else:
            sso.delete_inline_policy_from_permission_set(
                InstanceArn=instance, PermissionSetArn=permission_set
            )
        account = Target.from_arn(record.target).account
        status = provision_permission_set(sso, instance, permission_set, account=account, sleep=self.sleep)
        return ActionRecord(self.name, record.target, {**details, "provisioning": status}, at=_now_iso())

    def _find(self, sso: Any, role_name: str) -> tuple[str, str]:
        """The instance, and the permission set whose provisioned role this is (AWSReservedSSO_<name>_<hex>)."""
        instance = self.instance_arn or str(sso.list_instances()["Instances"][0]["InstanceArn"])
        wanted = role_name.removeprefix("AWSReservedSSO_").rsplit("_", 1)[0]
        kwargs: dict[str, Any] = {"InstanceArn": instance}
        while True:
            page = sso.list_permission_sets(**kwargs)
            for arn in page.get("PermissionSets", []):
                described = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
                if described["PermissionSet"]["Name"] == wanted:
                    return instance, str(arn)
            if not page.get("NextToken"):
                raise GuardrailError(f"no permission set named {wanted} in {instance}")
            kwargs["NextToken"] = page["NextToken"]

    @staticmethod
    def _inline(sso: Any, instance: str, permission_set: str) -> dict[str, Any]:
        text = sso.get_inline_policy_for_permission_set(
            InstanceArn=instance, PermissionSetArn=permission_set
        ).get("InlinePolicy")
        document = json.loads(text) if text else {}
        if isinstance(document.get("Statement"), dict):
            document["Statement"] = [document["Statement"]]
        return document if isinstance(document, dict) else {}


class PutUserDenyAll(_InlinePolicy):
    """Covers console sessions and the temporary credentials the user minted with GetSessionToken or
    GetFederationToken, which survive deactivating its access keys."""

    name = "put_user_deny_all"
    target_kind = TargetKind.USER
    permissions = ("iam:PutUserPolicy",)
    undo_permissions = ("iam:DeleteUserPolicy",)
    verify_permissions = ("iam:GetUserPolicy",)
    policy_name = DENY_ALL_POLICY
    stops_agent = True
    fallback = AttachUserDenyAll()

    def document(self, incident: IncidentRef) -> dict[str, Any]:
        return deny_all_document(incident)

    def _put(self, iam: IAMClient, name: str, policy_name: str, document: str) -> Any:
        return iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=document)

    def _delete(self, iam: IAMClient, name: str, policy_name: str) -> Any:
        return iam.delete_user_policy(UserName=name, PolicyName=policy_name)

    def _get(self, iam: IAMClient, name: str, policy_name: str) -> Any:
        return iam.get_user_policy(UserName=name, PolicyName=policy_name)


class TagRole(ContainmentAction):
    name = "tag_role"
    target_kind = TargetKind.ROLE
    permissions = ("iam:TagRole",)
    undo_permissions = ("iam:UntagRole",)

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        tags = {INCIDENT_TAG: incident.id, CONTAINED_AT_TAG: incident.opened_at_iso}
        response = iam.tag_role(RoleName=target.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return ActionRecord(
            self.name, target.key, {"tag_keys": list(tags)}, [_request_id(response)], _now_iso()
        )

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        name = Target.from_arn(record.target).name
        return self._undone(
            record, iam, lambda: iam.untag_role(RoleName=name, TagKeys=list(record.details["tag_keys"]))
        )


class DeactivateAccessKeys(ContainmentAction):
    """Sets every active key Inactive and records which, so release reactivates only those."""

    name = "deactivate_access_keys"
    target_kind = TargetKind.USER
    permissions = ("iam:ListAccessKeys", "iam:UpdateAccessKey")
    undo_permissions = ("iam:UpdateAccessKey",)
    verify_permissions = ("iam:ListAccessKeys",)

    def verify(self, record: ActionRecord, incident: IncidentRef, iam: IAMClient) -> str | None:
        keys = iam.list_access_keys(UserName=Target.from_arn(record.target).name)["AccessKeyMetadata"]
        active = sorted(k["AccessKeyId"] for k in keys if k["Status"] == "Active")
        return f"access keys {', '.join(active)} of {record.target} are active again" if active else None

    def apply(self, target: Target, incident: IncidentRef, iam: IAMClient) -> ActionRecord:
        keys = iam.list_access_keys(UserName=target.name)["AccessKeyMetadata"]
        deactivated, request_ids = [], []
        for key in keys:
            if key["Status"] == "Active":
                response = iam.update_access_key(
                    UserName=target.name, AccessKeyId=key["AccessKeyId"], Status="Inactive"
                )
                deactivated.append(key["AccessKeyId"])
                request_ids.append(_request_id(response))
        already = [k["AccessKeyId"] for k in keys if k["Status"] != "Active"]
        details = {"deactivated": deactivated, "already_inactive": already}
        return ActionRecord(self.name, target.key, details, request_ids, _now_iso())

    def undo(self, record: ActionRecord, iam: IAMClient) -> ActionRecord:
        name = Target.from_arn(record.target).name
        reactivated, missing, request_ids = [], [], []
        for key_id in record.details.get("deactivated", []):
            try:
                response = iam.update_access_key(UserName=name, AccessKeyId=key_id, Status="Active")
            except iam.exceptions.NoSuchEntityException:
                missing.append(key_id)
                continue
            reactivated.append(key_id)
            request_ids.append(_request_id(response))
        details = {"reactivated": reactivated, "deleted_since": missing}
        return ActionRecord(self.name, record.target, details, request_ids, _now_iso())


ALL_ACTIONS: tuple[ContainmentAction, ...] = (
    PutRoleDenyAll(),
    PutRoleRevokeOlderSessions(),
    PutRoleDenySession(),
    DenyIdentityCenterUser(),
    DenyPermissionSetInline(),
    AttachRoleDenyAll(),
    TagRole(),
    PutUserDenyAll(),
    AttachUserDenyAll(),
    DeactivateAccessKeys(),
)
ACTIONS_BY_NAME = {a.name: a for a in ALL_ACTIONS}


def containment_permissions() -> set[str]:
    """The IAM actions containment calls, checking included: what template.yaml grants the responder, no more."""
    return {p for a in ALL_ACTIONS for p in (*a.permissions, *a.verify_permissions)}


def release_permissions() -> set[str]:
    """The IAM actions release calls: what template.yaml grants the release function, no more."""
    return {p for a in ALL_ACTIONS for p in a.undo_permissions}


# --- planning ----------------------------------------------------------------------------------------


class Blocked(StrEnum):
    NOT_CONTAINABLE = "not_containable"  # IAM cannot or must not do it here: a human must act
    REFUSED = "refused"  # containing this principal would be a bug: report it instead


@dataclass(frozen=True)
class ContainmentPlan:
    target: Target | None
    actions: tuple[ContainmentAction, ...] = ()
    blocked: Blocked | None = None
    reason: str = ""
    manual_steps: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()

    @property
    def key(self) -> str | None:
        return self.target.key if self.target else None


@dataclass(frozen=True, slots=True)
class ResponderIdentity:
    """Who the responder runs as, learned from STS only when a containment needs it."""

    account: str
    arn: str
    role_name: str | None

    @classmethod
    def from_caller_arn(cls, account: str, arn: str) -> ResponderIdentity:
        match = re.match(r"^arn:aws[\w-]*:sts::\d{12}:assumed-role/([^/]+)/", arn)
        return cls(account, arn, match.group(1) if match else None)


def principal_key(principal: Principal) -> str:
    """The principal's identity in the state table: one open incident per key. Roles and users by their
    path-free ARN (a session's role, not the session), so every session of an agent joins one incident."""
    if principal.kind is PrincipalKind.ROLE and principal.name:
        return Target(TargetKind.ROLE, principal.name, principal.account).key
    if principal.kind is PrincipalKind.IDENTITY_CENTER and principal.name and principal.session_name:
        # One incident per user and permission set, never on the key of a role that can be contained.
        member = principal.session_name
        return Target(TargetKind.IDENTITY_CENTER, principal.name, principal.account, member=member).key
    if principal.kind in (PrincipalKind.IDENTITY_CENTER, PrincipalKind.SERVICE_LINKED):
        # Held "not containable": keyed by the full ARN, path included, so such a hold can never stand on the
        # key of a role that can be contained (a record claiming an Identity Center path for an agent's own
        # role would otherwise make that role immune).
        return bounded(principal.issuer_arn or principal.arn or f"{principal.kind.value}:{principal.name}")
    if principal.kind in (PrincipalKind.USER, PrincipalKind.FEDERATED) and principal.name:
        return Target(TargetKind.USER, principal.name, principal.account).key
    if principal.kind is PrincipalKind.ROOT:
        return f"arn:aws:iam::{principal.account}:root"
    # Whatever an event says here is stored as the incident's key: bounded, as every state-table key is.
    return bounded(principal.arn or f"{principal.kind.value}:{principal.name}")


def _deny_command(target: Target) -> str:
    kind = "role" if target.kind is TargetKind.ROLE else "user"
    return (
        f"aws iam put-{kind}-policy --{kind}-name {target.name} --policy-name {DENY_ALL_POLICY} "
        '--policy-document \'{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}\' '
        f"(with credentials for account {target.account})"
    )


def plan_containment(
    verdict: Verdict,
    settings: Settings,
    responder: ResponderIdentity,
    reachable: Callable[[str], bool] | None = None,
) -> ContainmentPlan:
    """What containing the caller of this verdict means: pure, no AWS.

    `reachable(account)` says whether the responder holds IAM credentials for an account; by default only
    its own. A provider of sessions in other accounts (an assumed containment role) widens it.
    """
    can_reach = reachable or (lambda account: account == responder.account)
    principal = verdict.call.principal
    caveats: tuple[str, ...] = ()
    if settings.containment_mode is not ContainmentMode.DENY_ALL:
        caveats = (REVOKE_SESSIONS_CAVEAT,)

    # Root is reported whatever the decision: an incident with the manual steps, since IAM cannot act.
    if principal.kind is PrincipalKind.ROOT:
        return ContainmentPlan(
            None,
            blocked=Blocked.NOT_CONTAINABLE,
            reason="the root user is beyond IAM: no policy can restrict it",
            manual_steps=(
                f"Sign in to account {principal.account} as root; change the password and MFA device.",
                "Delete any root access keys (IAM > Security credentials).",
                "From the management account, restrict the account with an SCP and enable centralized root access.",
                "Review CloudTrail for everything the root user did (userIdentity.type = Root).",
            ),
        )
    # Never: these are bugs upstream (the classifier should not decide contain for them). Report instead.
    if verdict.decision is not Decision.CONTAIN:
        return ContainmentPlan(
            None, blocked=Blocked.REFUSED, reason=f"decision is {verdict.decision}, not contain"
        )
    if not settings.is_agent(principal):
        return ContainmentPlan(None, blocked=Blocked.REFUSED, reason="the principal is not a watched agent")
    if settings.is_protected(principal):
        return ContainmentPlan(None, blocked=Blocked.REFUSED, reason="the principal is protected")

    kind = principal.kind
    if kind is PrincipalKind.IDENTITY_CENTER:
        permission_set = principal.name.removeprefix("AWSReservedSSO_").rsplit("_", 1)[0] or principal.name
        user = principal.session_name
        session = SessionRef.of(principal) if user else None
        if session is not None and session.userid and can_reach(principal.account):
            held = Target(TargetKind.IDENTITY_CENTER, principal.name, principal.account, session, user)
            fallback: tuple[ContainmentAction, ...] = ()
            if settings.identity_center_admin_role_arn:
                fallback = (DenyPermissionSetInline(None, settings.identity_center_instance_arn),)
            return ContainmentPlan(
                held,
                (DenyIdentityCenterUser(None, settings.identity_center_instance_arn), *fallback),
                reason=(
                    f"Identity Center user {user} (permission set {permission_set}, account "
                    f"{principal.account}): their sessions are denied by {IDENTITY_CENTER_POLICY}"
                ),
                manual_steps=(
                    f"Disable user {user} in IAM Identity Center (or at your external identity provider): "
                    "the deny stops their sessions in this account, not new sign-ins.",
                    f"Check the user's other accounts: the deny is written in account {principal.account} only.",
                ),
                caveats=(
                    f"Holds where permission set {permission_set} references the customer-managed policy "
                    f"{IDENTITY_CENTER_PATH}{IDENTITY_CENTER_POLICY} (guardrail sso prepare; "
                    "docs/identity-center.md); where it does not, the write changes nothing.",
                ),
            )
        return ContainmentPlan(
            None,
            blocked=Blocked.NOT_CONTAINABLE,
            reason=(
                f"{principal.name} is provisioned by IAM Identity Center: IAM refuses changes to it, or the next "
                "provisioning undoes them"
            ),
            manual_steps=(
                f"In IAM Identity Center, remove the assignment of permission set {permission_set} to the user "
                f"or group for account {principal.account}, or disable the user "
                f"({principal.session_name or 'see the session name'}).",
                "In IAM Identity Center > Users, revoke the user's active sessions.",
                f"Meanwhile, an SCP can deny aws:PrincipalArn arn:aws:iam::{principal.account}:role/aws-reserved/"
                f"sso.amazonaws.com/*/AWSReservedSSO_{permission_set}_*.",
            ),
        )
    if kind in (PrincipalKind.SERVICE_LINKED, PrincipalKind.SERVICE):
        return ContainmentPlan(
            None,
            blocked=Blocked.NOT_CONTAINABLE,
            reason=f"{principal.display} is an AWS service acting for someone: IAM refuses policies on it",
            manual_steps=(
                "Find in CloudTrail which principal made the service act (the call that created or configured it) "
                "and contain that principal.",
            ),
        )

    target: Target | None = None
    if kind is PrincipalKind.ROLE and principal.name:
        target = Target(TargetKind.ROLE, principal.name, principal.account)
    elif kind is PrincipalKind.USER and principal.name:
        target = Target(TargetKind.USER, principal.name, principal.account)
    elif kind is PrincipalKind.FEDERATED and principal.name:
        # GetFederationToken sessions act with the issuing user's permissions: a deny on the user stops them.
        target = Target(TargetKind.USER, principal.name, principal.account)
    if target is None:
        return ContainmentPlan(
            None,
            blocked=Blocked.NOT_CONTAINABLE,
            reason=f"cannot tell which IAM role or user {principal.arn or 'this principal'} is",
            manual_steps=("Identify the principal from the CloudTrail record and contain it by hand.",),
        )

    if not can_reach(target.account):
        return ContainmentPlan(
            target,
            blocked=Blocked.NOT_CONTAINABLE,
            reason=f"{target.key} is in account {target.account}; this responder runs in {responder.account}",
            manual_steps=(_deny_command(target),),
        )
    if target.kind is TargetKind.ROLE and target.name == responder.role_name:
        return ContainmentPlan(
            target, blocked=Blocked.REFUSED, reason="the principal is the responder's own role"
        )

    if target.kind is TargetKind.ROLE and settings.scope_in(verdict.environment) is ContainmentScope.SESSION:
        session = SessionRef.of(principal)
        if session is not None:
            scoped = Target(target.kind, target.name, target.account, session)
            note = (
                f"Only {session.describe()} of {target.name} is denied: the role's other sessions keep "
                "working. A containing call from another session of the role widens the containment to "
                "the whole role."
            )
            return ContainmentPlan(scoped, (PutRoleDenySession(), TagRole()), caveats=(note,))
        caveats = (
            *caveats,
            "Session scope asked, but the record names no session a policy can key on (no source identity, "
            "no role session id): the whole role is contained.",
        )
    if target.kind is TargetKind.USER:
        actions: tuple[ContainmentAction, ...] = (PutUserDenyAll(), DeactivateAccessKeys())
    else:
        by_mode: dict[ContainmentMode, tuple[ContainmentAction, ...]] = {
            ContainmentMode.DENY_ALL: (PutRoleDenyAll(),),
            ContainmentMode.REVOKE_SESSIONS: (PutRoleRevokeOlderSessions(),),
            ContainmentMode.BOTH: (PutRoleDenyAll(), PutRoleRevokeOlderSessions()),
        }
        actions = (*by_mode[settings.containment_mode], TagRole())
    return ContainmentPlan(target, actions, caveats=caveats)


def _attempt(
    action: ContainmentAction, target: Target, incident: IncidentRef, iam: IAMClient, started: float | None
) -> ActionRecord:
    """Apply one action; a failure becomes the record's error, never an exception (the next layer runs)."""
    try:
        record = action.apply(target, incident, iam)
    except Exception as exc:  # any failure here may leave an agent loose: say exactly which step and why
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        record = ActionRecord(action.name, target.key, at=_now_iso(), error=f"{code}: {exc}")
    if started is not None:
        record.ms = round((time.perf_counter() - started) * 1000, 2)
    return record


def _bound(action: ContainmentAction, admin: Callable[[str], Any] | None) -> ContainmentAction:
    """An action that works in Identity Center's administration account, given the way there."""
    if (
        isinstance(action, DenyPermissionSetInline | DenyIdentityCenterUser)
        and action.admin is None
        and admin
    ):
        return type(action)(admin, action.instance_arn)
    return action


def apply_plan(
    plan: ContainmentPlan,
    incident: IncidentRef,
    iam: IAMClient,
    started: float | None = None,
    admin: Callable[[str], Any] | None = None,
) -> list[ActionRecord]:
    """Do the plan's actions in order, the one that stops the agent first, and every one of them whatever
    another's fate: a user's keys are deactivated even when its deny policy could not be written. A deny
    layer that fails is replaced by its fallback (the inline quota is the agent's to fill).

    Returns every record, failures included (their `error` set), when at least one deny layer holds: the
    agent is stopped. Raises ContainmentFailed, with everything done, when none does. With `started` (a
    perf_counter reading at handler entry) each record says how many ms after it the action completed."""
    target = plan.target
    assert target is not None
    records: list[ActionRecord] = []
    for planned in plan.actions:
        action = _bound(planned, admin)
        records.append(_attempt(action, target, incident, iam, started))
        fallback = action.fallback
        if (
            records[-1].error is not None
            and fallback is not None
            and fallback.name not in {r.action for r in records}
        ):
            records.append(_attempt(fallback, target, incident, iam, started))
    held, _ = holding(records)
    if not held:
        failed = "; ".join(f"{r.action}: {r.error}" for r in records if r.error)
        raise ContainmentFailed(f"no deny could be written on {target.key}: {failed}", records)
    return records


def restore(
    records: list[ActionRecord], incident: IncidentRef, iam: IAMClient
) -> tuple[list[str], list[ActionRecord]]:
    """Check that every action a containment applied is still exactly in place, and apply again those that
    are not. Returns what was found changed and the records of what was applied again; read-only when
    nothing changed."""
    changed: list[str] = []
    redone: list[ActionRecord] = []
    for record in records:
        if record.error is not None or record.details.get("dry_run"):
            continue
        action = ACTIONS_BY_NAME[record.action]
        problem = action.verify(record, incident, iam)
        if problem is not None:
            changed.append(problem)
            target = (
                action.restore_target(record)
                if isinstance(action, PutRoleDenySession | DenyIdentityCenterUser)
                else Target.from_arn(record.target)
            )
            redone.append(_attempt(action, target, incident, iam, None))
    return changed, redone


def holding(records: list[ActionRecord]) -> tuple[list[str], list[str]]:
    """(the deny layers that hold, the actions that failed), by name, from what apply_plan returned."""
    held = [
        r.action
        for r in records
        if r.error is None
        and ACTIONS_BY_NAME[r.action].stops_agent
        and not r.details.get("covered_by_reference")  # another layer's policy does the denying
    ]
    return held, [r.action for r in records if r.error]


def undo_records(
    records: list[ActionRecord], iam: IAMClient, admin: Callable[[str], Any] | None = None
) -> list[ActionRecord]:
    """Undo exactly what a containment did, last first. A permission set's inline deny is undone even when
    its provisioning had not finished (the statement was written)."""
    return [
        _bound(ACTIONS_BY_NAME[r.action], admin).undo(r, iam)
        for r in reversed(records)
        if r.error is None or (r.action == DenyPermissionSetInline.name and r.details.get("sid"))
    ]
