"""One central responder for an organization: which accounts it serves, in which environment, and IAM in
each through the member stack's containment role.

Member accounts forward their CloudTrail events to the central event bus and hold a containment role only
the central responder and release functions can assume (their role ARNs and an external id). Here:
- `refusal`: a pure check that an event may be acted on: the account that put it on the bus is the account
  it names, and that account is a member. Anything else is refused and kept, never acted on.
- `Directory`: Organizations lookups (is this account ours? which environment does its tag say?), cached.
- `MemberSessions`: sessions in member accounts through the containment role, cached until shortly
  before their credentials expire. It is the IamProvider the containment code already takes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardrail.detect.cloudtrail import forgery
from guardrail.errors import GuardrailError
from guardrail.model import Environment

if TYPE_CHECKING:
    from collections.abc import Callable

    import boto3
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient

    from guardrail.model import ApiCall

# What the central functions need beyond their own account (the template grants exactly these).
MEMBER_PERMISSIONS = ("sts:AssumeRole",)
DIRECTORY_PERMISSIONS = ("organizations:DescribeAccount", "organizations:ListTagsForResource")
SESSION_SECONDS = 900  # the shortest STS allows: a leaked session is worth little
_REFRESH_BEFORE = 300  # a session is renewed this long before it expires, so no call runs on a stale one
LOOKUP_TTL = 900.0  # Organizations answers are kept this long per account


class MemberAccessError(GuardrailError):
    """The containment role of a member account could not be assumed: containment there fails loudly."""


def refusal(call: ApiCall, own_account: str, is_member: Callable[[str], bool]) -> str | None:
    """Why this event must not be acted on, or None. Pure."""
    forged = forgery(call)
    if forged is not None:
        return forged
    if call.account and call.account != own_account and not is_member(call.account):
        return (
            f"account {call.account} is not a member this responder serves (GUARDRAIL_MEMBER_ACCOUNTS or "
            "the organization): refused; nothing was done"
        )
    return None


@dataclass
class _Cached:
    value: Any
    until: float


@dataclass
class Directory:
    """Organizations, read through a client from the management or delegated administrator account."""

    client: Callable[[], Any]
    organization_id: str | None = None
    environment_tag: str | None = None
    clock: Callable[[], float] = time.monotonic
    ttl: float = LOOKUP_TTL
    _cache: dict[tuple[str, str], _Cached] = field(default_factory=dict)

    def _cached(self, kind: str, account: str, compute: Callable[[], Any]) -> Any:
        entry = self._cache.get((kind, account))
        now = self.clock()
        if entry is None or entry.until <= now:
            entry = _Cached(compute(), now + self.ttl)
            self._cache[(kind, account)] = entry
        return entry.value

    def is_member(self, account: str) -> bool:
        def ask() -> bool:
            try:
                found = self.client().describe_account(AccountId=account)["Account"]
            except Exception as exc:
                if type(exc).__name__ == "AccountNotFoundException" or "AccountNotFound" in str(exc):
                    return False
                raise  # throttled or not allowed: fail the invocation, Lambda retries; never guess
            return self.organization_id is None or f"/{self.organization_id}/" in str(found.get("Arn", ""))

        return bool(self._cached("member", account, ask))

    def environment(self, account: str) -> Environment | None:
        """The environment the account's tag names, or None (no tag, an unknown value, or no answer)."""
        tag = self.environment_tag
        if tag is None:
            return None

        def ask() -> Environment | None:
            try:
                tags = self.client().list_tags_for_resource(ResourceId=account).get("Tags", [])
            except Exception:
                # Unknown here means the default environment (production): never in the agent's favour.
                return None
            for item in tags:
                if item.get("Key") == tag:
                    try:
                        return Environment(str(item.get("Value", "")).lower())
                    except ValueError:
                        return None
            return None

        result: Environment | None = self._cached("environment", account, ask)
        return result


@dataclass
class MemberSessions:
    """IAM (and EC2 lookups) in member accounts, through their containment role."""

    sts: Callable[[], Any]
    role_name: str
    external_id: str
    is_member: Callable[[str], bool]
    clock: Callable[[], float] = time.time
    _sessions: dict[str, tuple[boto3.session.Session, float]] = field(default_factory=dict)
    _clients: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def role_arn(self, account: str) -> str:
        return f"arn:aws:iam::{account}:role/{self.role_name}"

    def session_for(self, account: str) -> boto3.session.Session | None:
        """A session in a member account, or None for an account that is not one."""
        if not self.is_member(account):
            return None
        with self._lock:
            held = self._sessions.get(account)
            if held is not None and held[1] - _REFRESH_BEFORE > self.clock():
                return held[0]
            import boto3

            try:
                credentials = self.sts().assume_role(
                    RoleArn=self.role_arn(account),
                    RoleSessionName="guardrail-responder",
                    ExternalId=self.external_id,
                    DurationSeconds=SESSION_SECONDS,
                )["Credentials"]
            except Exception as exc:
                raise MemberAccessError(
                    f"could not assume {self.role_arn(account)} (is member.yaml deployed there, trusting this "
                    f"function's role and external id?): {exc}"
                ) from exc
            session = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            self._sessions[account] = (session, credentials["Expiration"].timestamp())
            for key in [k for k in self._clients if k[0] == account]:
                del self._clients[key]
            return session

    def _client(self, account: str, service: str, region: str | None = None) -> Any:
        session = self.session_for(account)
        if session is None:
            return None
        key = (account, service, region or "")
        with self._lock:
            client = self._clients.get(key)
            if client is None or self._sessions.get(account, (None,))[0] is not session:
                from guardrail.aws import client_config

                client = session.client(
                    service, region_name=region, config=client_config(lookup=bool(region))
                )  # type: ignore[call-overload]
                self._clients[key] = client
        return client

    def iam_for(self, account: str) -> IAMClient | None:
        client: IAMClient | None = self._client(account, "iam")
        return client

    def ec2_for(self, account: str, region: str) -> EC2Client | None:
        client: EC2Client | None = self._client(account, "ec2", region)
        return client
