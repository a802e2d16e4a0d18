"""The container's runtime: settings, AWS clients, the state table and the responder's identity, built once.

Lambda keeps a container warm between invocations; everything here is created on first use and reused.
What only acting needs (the state table, Organizations, member sessions) is imported when first asked for,
so an ignored event loads none of it. Tests and replay put in their own (`use_runtime`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from guardrail.aws import AwsClients, IamProvider, SameAccountIam
from guardrail.errors import ConfigurationError
from guardrail.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient

    from guardrail.model import ApiCall, Environment
    from guardrail.respond.containment import ResponderIdentity
    from guardrail.respond.organizations import Directory, MemberSessions
    from guardrail.respond.state.store import IncidentStore


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything an invocation needs from its container: settings, clients, state, built once."""

    settings: Settings
    aws: AwsClients
    clock: Callable[[], datetime] = _utc_now
    iam_provider: IamProvider | None = None
    _identity: ResponderIdentity | None = None
    _store: IncidentStore | None = None

    _directory: Directory | None = None
    _members: MemberSessions | None = None

    def iam_for(self, account: str) -> IAMClient | None:
        """IAM in `account`, if this responder can reach it: its own account, and members' through their
        containment role when it is a central responder."""
        if self.iam_provider is None:
            self.iam_provider = SameAccountIam(self.aws, self.identity().account)
        own = self.iam_provider.iam_for(account)
        if own is not None or (members := self.members()) is None:
            return own
        return members.iam_for(account)

    def can_reach(self, account: str) -> bool:
        """Whether IAM in `account` is within reach, without reaching for it (no role is assumed here)."""
        if self.iam_provider is None:
            self.iam_provider = SameAccountIam(self.aws, self.identity().account)
        if self.iam_provider.iam_for(account) is not None:
            return True
        return self.members() is not None and self.is_member(account)

    def identity_center_admin(self, service: str = "sso-admin") -> Any:
        """A client of `service` (sso-admin, identitystore) in Identity Center's administration account,
        through the configured role (assumed each time: it is needed only on an Identity Center
        containment or its release, and its credentials must not outlive the call)."""
        role = self.settings.identity_center_admin_role_arn
        if role is None:
            raise ConfigurationError("GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN is not set")
        import boto3

        credentials = self.aws.sts.assume_role(
            RoleArn=role, RoleSessionName="guardrail-responder", DurationSeconds=900
        )["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        from guardrail.aws import client_config

        region = self.settings.identity_center_region  # Identity Center lives in one region
        return session.client(service, region_name=region, config=client_config())  # type: ignore[call-overload]

    def members(self) -> MemberSessions | None:
        settings = self.settings
        if settings.member_role_name is None or settings.member_external_id is None:
            return None
        if self._members is None:
            from guardrail.respond.organizations import MemberSessions

            self._members = MemberSessions(
                sts=lambda: self.aws.sts,
                role_name=settings.member_role_name,
                external_id=settings.member_external_id,
                is_member=self.is_member,
            )
        return self._members

    def directory(self) -> Directory:
        if self._directory is None:
            from guardrail.respond.organizations import Directory

            self._directory = Directory(
                client=lambda: self.aws.organizations,
                organization_id=self.settings.organization_id,
                environment_tag=self.settings.environment_tag,
            )
        return self._directory

    def is_member(self, account: str) -> bool:
        """Whether a central responder serves this account (its own always)."""
        if account == self.identity().account:
            return True
        if self.settings.member_accounts:
            return account in self.settings.member_accounts
        if self.settings.organization_id:
            return self.directory().is_member(account)
        return False

    def environment_of(self, account: str) -> Environment:
        """GUARDRAIL_ACCOUNT_ENVIRONMENTS first, then the account's Organizations tag (cached), then the
        default: production."""
        named = self.settings.account_environments.get(account)
        if named is not None:
            return named
        if self.settings.environment_tag:
            tagged = self.directory().environment(account)
            if tagged is not None:
                return tagged
        return self.settings.default_environment

    @property
    def store(self) -> IncidentStore:
        if self._store is None:
            if not self.settings.state_table:
                raise ConfigurationError("GUARDRAIL_STATE_TABLE is not set: incidents need the state table")
            from guardrail.respond.state.store import IncidentStore

            self._store = IncidentStore(
                self.aws.dynamodb, self.settings.state_table, self.clock, self.settings.flight_days
            )
        return self._store

    def lifecycle(self, call: ApiCall) -> bool | None:
        """Whether the resource a destructive call acts on is tagged Lifecycle=ephemeral (None: unknown).
        Asked only where the call's environment considers the tag."""
        from guardrail.detect.lifecycle import resolver

        return resolver(self._ec2_for)(call)

    def _ec2_for(self, account: str, region: str) -> EC2Client | None:
        if account == self.identity().account:
            return self.aws.ec2_in(region)
        members = self.members()
        return members.ec2_for(account, region) if members is not None else None

    def publish(self, message: dict[str, Any]) -> str | None:
        """One message to the incident topic (see guardrail.report.sns); the client is built only when
        there is a topic to publish to."""
        from guardrail.report import sns

        return sns.publish(message, self.settings.topic_arn, lambda: self.aws.sns)

    def identity(self) -> ResponderIdentity:
        """Who the responder runs as; asked of STS once, and only when a containment needs it."""
        if self._identity is None:
            from guardrail.respond.containment import ResponderIdentity

            caller = self.aws.sts.get_caller_identity()
            self._identity = ResponderIdentity.from_caller_arn(caller["Account"], caller["Arn"])
        return self._identity


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The container's runtime; settings are validated here, on first use, with a clear error."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings=Settings.from_env(), aws=AwsClients())
    return _runtime


def use_runtime(value: Runtime | None) -> None:
    """Replace the container's runtime (tests, replay); None makes the next call rebuild it."""
    global _runtime
    _runtime = value
