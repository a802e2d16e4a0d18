"""An AWS account on a moto server (IAM enforced), and the real responder handler wired to it."""

from __future__ import annotations

import copy
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from guardrail.aws import AwsClients
from guardrail.detect.cloudtrail import parse_event
from guardrail.operate.replay import CallRecorder, EmbeddedAws, invoke, load_handler
from guardrail.respond.handler import handle_event
from guardrail.respond.runtime import Runtime, use_runtime
from guardrail.settings import Settings
from tests.conftest import load_event

ACCOUNT = "111122223333"
READS = ("Get", "List", "Describe", "BatchGet", "Query", "Scan")


@dataclass
class Responder:
    """Calls the real handler as Lambda would, and remembers every AWS call it made."""

    aws: EmbeddedAws
    runtime: Runtime
    recorder: CallRecorder
    handler: Any
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.recorder.start()
        try:
            return invoke(self.handler, event)
        finally:
            self.calls.extend(self.recorder.calls)

    def writes(self, service: str | None = None) -> list[str]:
        return [
            c["operation"]
            for c in self.calls
            if not c["operation"].startswith(READS) and (service is None or c["service"] == service)
        ]

    def agent(self, event: dict[str, Any]) -> boto3.session.Session:
        session = self.aws.agent_session(parse_event(event))
        assert session is not None
        return session


@pytest.fixture
def account() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(account=ACCOUNT) as aws:
        yield aws


@pytest.fixture
def make_responder(account: EmbeddedAws) -> Iterator[Any]:
    def build(
        env: dict[str, str] | None = None, session: boto3.session.Session | None = None, config: Any = None
    ) -> Responder:
        session = session or account.session()
        recorder = CallRecorder()
        recorder.attach(session)
        runtime = Runtime(
            settings=Settings.from_env({**account.settings_env, **(env or {})}),
            aws=AwsClients(session=session, config=config),
        )
        use_runtime(runtime)
        return Responder(account, runtime, recorder, load_handler())

    yield build
    use_runtime(None)


@pytest.fixture
def responder(make_responder: Any) -> Responder:
    return make_responder()


def critical(
    relative: str = "rules/dynamodb.table-deleted.json", event_id: str | None = None
) -> dict[str, Any]:
    event = copy.deepcopy(load_event(relative))
    if event_id is not None:
        event["detail"]["eventID"] = event_id
    return event


def fresh_id() -> str:
    return str(uuid.uuid4())


def denied(call: Any) -> bool:
    """True when AWS refuses the call for lack of permission (moto answers some services with a bare 403)."""
    try:
        call()
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in (401, 403)
    return False


@pytest.fixture
def atomic_dynamodb_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB transactions are atomic and isolated; moto's are not under concurrency: it applies the items
    one by one and, when one fails, restores a deep copy of the whole table taken at the start, wiping what
    other threads wrote meanwhile. One reentrant lock over moto's writes gives back the semantics the
    responder relies on (and that DynamoDB documents)."""
    import threading  # noqa: PLC0415

    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    lock = threading.RLock()
    for name in ("transact_write_items", "put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serialised)


def container(account: EmbeddedAws) -> Runtime:
    """A fresh container's runtime on the account: its own session, clients and state."""
    return Runtime(
        settings=Settings.from_env(account.settings_env), aws=AwsClients(session=account.session())
    )


def concurrently(account: EmbeddedAws, events: list[dict[str, Any]]) -> tuple[Counter[str], list[str]]:
    """Handle each event in a container of its own, all released at once, as concurrent Lambda invocations
    would be. Returns the outcomes' statuses and every PutRolePolicy made; a failure fails the test."""
    statuses: Counter[str] = Counter()
    iam_writes: list[str] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(events))
    lock = threading.Lock()

    def invocation(event: dict[str, Any]) -> None:
        session = account.session()
        recorder = CallRecorder()
        recorder.attach(session)
        runtime = Runtime(settings=Settings.from_env(account.settings_env), aws=AwsClients(session=session))
        barrier.wait()
        recorder.start()
        try:
            status = handle_event(event, runtime).status
        except BaseException as exc:  # noqa: BLE001  (collected, raised below)
            failures.append(exc)
            return
        with lock:
            statuses[status] += 1
            iam_writes.extend(c["operation"] for c in recorder.calls if c["operation"] == "PutRolePolicy")

    threads = [threading.Thread(target=invocation, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return statuses, iam_writes
