"""AWS clients: created once per container, lazily, and replaceable by tests and by replay."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient


def client_config(*, lookup: bool = False) -> Any:
    from botocore.config import Config

    if lookup:
        # Lookups only refine a decision; a slow one must not hold up a containment, and failing means
        # "cannot be known", which is decided against the agent anyway.
        return Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=1, read_timeout=2)
    # Adaptive retries ride out IAM throttling during a storm; short timeouts keep a hung endpoint
    # from eating the invocation that should be containing an agent.
    return Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=2, read_timeout=5)


@dataclass
class AwsClients:
    """The clients the responder uses, each built on first use from one boto3 session."""

    session: boto3.session.Session | None = None
    config: Any = None  # a botocore Config for every client but the lookups (tests against a slow server)
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, service: str, region: str | None = None, *, lookup: bool | None = None) -> Any:
        lookup = bool(region) if lookup is None else lookup
        name = f"{service}@{region}{'?' if lookup else ''}" if region else service
        client = self._cache.get(name)
        if client is None:
            with self._lock:
                client = self._cache.get(name)
                if client is None:
                    if self.session is None:
                        import boto3

                        self.session = boto3.session.Session()
                    config = client_config(lookup=lookup) if lookup or self.config is None else self.config
                    client = self.session.client(service, region_name=region, config=config)  # type: ignore[call-overload]
                    self._cache[name] = client
        return client

    def client(self, service: str, region: str) -> Any:
        """Any service in one region, with the responder's usual retries: what a recovery step calls."""
        return self._client(service, region, lookup=False)

    def ec2_in(self, region: str) -> EC2Client:
        """EC2 in one region, for lookups (short timeouts): events come from every region."""
        return self._client("ec2", region)  # type: ignore[no-any-return]

    @property
    def iam(self) -> IAMClient:
        return self._client("iam")  # type: ignore[no-any-return]

    @property
    def sts(self) -> STSClient:
        return self._client("sts")  # type: ignore[no-any-return]

    @property
    def sns(self) -> SNSClient:
        return self._client("sns")  # type: ignore[no-any-return]

    @property
    def sqs(self) -> SQSClient:
        return self._client("sqs")  # type: ignore[no-any-return]

    @property
    def organizations(self) -> Any:
        return self._client("organizations")

    @property
    def dynamodb(self) -> DynamoDBClient:
        return self._client("dynamodb")  # type: ignore[no-any-return]

    @property
    def events(self) -> Any:
        return self._client("events")

    @property
    def cloudtrail(self) -> Any:
        return self._client("cloudtrail")

    @property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch")

    # The operator's tools only (guardrail preflight): the functions never call these.
    @property
    def cloudformation(self) -> Any:
        return self._client("cloudformation")

    @property
    def lambda_(self) -> Any:
        return self._client("lambda")


class IamProvider(Protocol):
    """IAM clients per account: where containment in another account plugs in (an assumed role there)."""

    def iam_for(self, account: str) -> IAMClient | None:
        """A client that can write IAM in `account`, or None when this responder cannot reach it."""
        ...


@dataclass
class SameAccountIam:
    """The default provider: the responder's own account and nothing else."""

    aws: AwsClients
    account: str

    def iam_for(self, account: str) -> IAMClient | None:
        return self.aws.iam if account == self.account else None
