"""Replay events through the real responder handler, in-process, and report every AWS call it makes.

The Docker-free way to see what the responder does: `sam local invoke` needs Docker; this needs nothing
but Python. By default the AWS it talks to is an embedded moto server on 127.0.0.1 holding the topic,
table, queue and agent principals the events name; `--aws` uses whatever endpoint boto3 is configured for.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.aws import AwsClients
from guardrail.detect.cloudtrail import parse_event, read_documents
from guardrail.errors import GuardrailError, InvalidEventError
from guardrail.model import ApiCall, PrincipalKind
from guardrail.report.message import subject
from guardrail.respond.runtime import Runtime, use_runtime
from guardrail.settings import Settings
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    import boto3

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
REGION = "us-east-1"
EMBEDDED_ACCOUNT = "123456789012"  # moto's default account


@dataclass
class LambdaContext:
    """Just enough of Lambda's context object for powertools' inject_lambda_context."""

    function_name: str = "guardrail-responder-replay"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        f"arn:aws:lambda:{REGION}:{EMBEDDED_ACCOUNT}:function:guardrail-responder-replay"
    )
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class CallRecorder:
    """Records each AWS API call a boto3 session makes, with milliseconds since `start()`."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    _t0: float = 0.0

    def attach(self, session: boto3.session.Session) -> None:
        session.events.register("before-call", self._before_call)

    def start(self) -> None:
        self.calls = []
        self._t0 = time.perf_counter()

    def _before_call(self, model: Any, **_: Any) -> None:
        self.calls.append(
            {
                "service": model.service_model.service_name,
                "operation": model.name,
                "ms": round((time.perf_counter() - self._t0) * 1000, 2),
            }
        )


def invoke(handler: Handler, event: object) -> dict[str, Any]:
    """Call a handler as Lambda would, one invocation."""
    try:
        return handler(event, LambdaContext())  # type: ignore[arg-type]
    finally:
        # In Lambda each invocation flushes (and so clears) its metrics; with metrics disabled nothing does.
        metrics.clear_metrics()


def find_project_file(relative: str) -> Path:
    """A file of the project checkout (functions/, events/), found from the cwd or this package."""
    override = os.environ.get("GUARDRAIL_PROJECT_DIR")
    starts = [Path(override)] if override else [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / relative
            if candidate.exists():
                return candidate
    raise GuardrailError(
        f"cannot find {relative}: run from the project checkout or set GUARDRAIL_PROJECT_DIR"
    )


def load_handler(function: str = "responder") -> Handler:
    """Import the real functions/<function>/app.py, as Lambda would."""
    path = find_project_file(f"functions/{function}/app.py")
    spec = importlib.util.spec_from_file_location(f"guardrail_{function}_app", path)
    if spec is None or spec.loader is None:
        raise GuardrailError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = module.handler
    return handler


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
_TRUST_ANYONE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)


class EmbeddedAws:
    """A moto server on 127.0.0.1 posing as one AWS account, with IAM enforced.

    The responder runs as an IAM user of its own; each agent an event names gets a real role (or user)
    and a real session, so replay can show that containment actually denies the agent.
    """

    def __init__(self, account: str = EMBEDDED_ACCOUNT, enforce_iam: bool = True) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request log is not our report
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.account = account
        self.enforce_iam = enforce_iam
        self.endpoint = ""
        self.settings_env: dict[str, str] = {}
        self._agents: dict[str, boto3.session.Session] = {}

    def __enter__(self) -> EmbeddedAws:
        self._server.start()
        try:
            self._start()
        except BaseException:
            # A with-block never exits what failed to enter: put the environment back and stop the server
            # here, or the next user of boto3 in this process would inherit a half-set-up account.
            if getattr(self, "_env", None) is not None:  # entered: set just after its __enter__
                self._env.__exit__(None, None, None)
            self._server.stop()
            raise
        return self

    def _start(self) -> None:
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        env = _environ(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "MOTO_ACCOUNT_ID": self.account,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        env.__enter__()
        self._env: Any = env
        os.environ.pop("AWS_SESSION_TOKEN", None)
        # moto keeps its state per process, not per server: start every replay from an empty account.
        self._post("/moto-api/reset", "")
        self._post("/moto-api/reset-auth", "inf")
        iam = self.session().client("iam")
        iam.create_user(UserName="guardrail-responder")
        iam.put_user_policy(UserName="guardrail-responder", PolicyName="replay", PolicyDocument=_ALLOW_ALL)
        key = iam.create_access_key(UserName="guardrail-responder")["AccessKey"]
        os.environ["AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]
        # From here moto finds each request's account from its access key: the responder's own, or an
        # assumed role's in a member account. MOTO_ACCOUNT_ID would pin every request to this account.
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        if self.enforce_iam:
            self._post("/moto-api/reset-auth", "0")  # from here on, every request is authorised by IAM
        self._provision_responder()

    def __exit__(self, *exc: object) -> None:
        self._post("/moto-api/reset-auth", "inf")
        self._env.__exit__(None, None, None)
        self._server.stop()

    def _post(self, path: str, body: str) -> None:
        request = urllib.request.Request(  # noqa: S310
            f"{self.endpoint}{path}",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        # Generous: resetting moto after a large run (the storm test's thousands of items) takes seconds.
        urllib.request.urlopen(request, timeout=120).close()  # noqa: S310  (our own server on 127.0.0.1)

    def session(self) -> boto3.session.Session:
        import boto3

        return boto3.session.Session(region_name=REGION)

    def _provision_responder(self) -> None:
        session = self.session()
        topic = session.client("sns").create_topic(Name="guardrail-incidents")["TopicArn"]
        session.client("dynamodb").create_table(
            TableName="guardrail-state",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = session.client("sqs")
        queue = sqs.create_queue(QueueName="guardrail-quarantine")["QueueUrl"]
        # What the topic really delivers, as a Lambda or SQS subscriber would get it.
        self.inbox = sqs.create_queue(QueueName="guardrail-replay-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        session.client("sns").subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"}
        )
        # What template.yaml and member.yaml put in every account: the prepared Identity Center deny.
        from guardrail.respond.containment import (
            IDENTITY_CENTER_PATH,
            IDENTITY_CENTER_POLICY,
            identity_center_document,
        )

        session.client("iam").create_policy(
            PolicyName=IDENTITY_CENTER_POLICY,
            Path=IDENTITY_CENTER_PATH,
            PolicyDocument=json.dumps(identity_center_document([])),
        )
        self.settings_env = {
            "GUARDRAIL_TOPIC_ARN": topic,
            "GUARDRAIL_STATE_TABLE": "guardrail-state",
            "GUARDRAIL_QUARANTINE_QUEUE_URL": queue,
        }

    def published(self) -> list[dict[str, Any]]:
        """Incident messages published to the topic since the last call, oldest first."""
        sqs = self.session().client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for item in batch:
                found.append(json.loads(item["Body"]))
                sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=item["ReceiptHandle"])

    def agent_session(self, call: ApiCall) -> boto3.session.Session | None:
        """A working session for the role or user an event names (created on first sight), or None
        when the principal is not one this account can hold."""
        principal = call.principal
        if call.account != self.account or not principal.name:
            return None
        key = f"{principal.kind.value}/{principal.name}"
        if key in self._agents:
            return self._agents[key]
        import boto3

        iam = self.session().client("iam")
        if principal.kind is PrincipalKind.ROLE:
            role = iam.create_role(RoleName=principal.name, AssumeRolePolicyDocument=_TRUST_ANYONE)["Role"]
            iam.put_role_policy(
                RoleName=principal.name, PolicyName="AgentPermissions", PolicyDocument=_ALLOW_ALL
            )
            credentials = (
                self.session()
                .client("sts")
                .assume_role(RoleArn=role["Arn"], RoleSessionName=principal.session_name or "agent")[
                    "Credentials"
                ]
            )
            session = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=REGION,
            )
        elif principal.kind is PrincipalKind.USER:
            iam.create_user(UserName=principal.name)
            iam.put_user_policy(
                UserName=principal.name, PolicyName="AgentPermissions", PolicyDocument=_ALLOW_ALL
            )
            key_pair = iam.create_access_key(UserName=principal.name)["AccessKey"]
            session = boto3.session.Session(
                aws_access_key_id=key_pair["AccessKeyId"],
                aws_secret_access_key=key_pair["SecretAccessKey"],
                region_name=REGION,
            )
        else:
            return None
        self._agents[key] = session
        return session


def agent_is_denied(session: boto3.session.Session) -> bool:
    """Try a harmless call as the agent: True when AWS refuses it."""
    from botocore.exceptions import ClientError

    try:
        session.client("s3").list_buckets()
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in (401, 403) or "Denied" in exc.response.get("Error", {}).get("Code", "")
    return False


class _CurrentStderr:
    """Writes to whatever sys.stderr is when a record is logged, not when the handler was set up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _quiet_telemetry() -> Iterator[None]:
    """Replay's stdout is its report: keep the handler's JSON logs and EMF metrics out of it while it
    runs, and give the process its logger back afterwards."""
    handler = logger.registered_handler
    stream = handler.stream if isinstance(handler, logging.StreamHandler) else None
    level = logger.log_level
    with _environ({"POWERTOOLS_METRICS_DISABLED": "true"}):
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(_CurrentStderr())
        logger.setLevel(os.environ.get("GUARDRAIL_REPLAY_LOG_LEVEL", "CRITICAL"))
        try:
            yield
        finally:
            logger.setLevel(level)
            if isinstance(handler, logging.StreamHandler) and stream is not None:
                handler.setStream(stream)


def _documents(paths: list[Path]) -> Iterator[tuple[str, object]]:
    for path in paths:
        try:
            yield from read_documents(path)
        except (OSError, InvalidEventError) as exc:
            yield str(path), InvalidEventError(str(exc))


def replay(
    paths: list[Path],
    *,
    use_aws: bool = False,
    settings_env: dict[str, str] | None = None,
    slack_webhook: str | None = None,
) -> list[dict[str, Any]]:
    """Run each event through the handler in order, in one environment; one result per event."""
    documents = list(_documents(paths))
    if use_aws:
        import boto3

        with _quiet_telemetry(), _environ(settings_env or {}):
            return _run(documents, boto3.session.Session(), None, slack_webhook)
    with (
        _quiet_telemetry(),
        EmbeddedAws(account=_first_account(documents)) as aws,
        _environ({**aws.settings_env, **(settings_env or {})}),
    ):
        return _run(documents, aws.session(), aws, slack_webhook)


def _preview_in_slack(result: dict[str, Any], webhook: str | None) -> None:
    """Post what this event published to a Slack webhook, so an operator can see the alerts as sent."""
    if not webhook:
        return
    from guardrail.report.slack_delivery import SlackDeliveryError, WebhookDelivery

    sender = WebhookDelivery(webhook)
    for notification in result.get("notifications") or []:
        try:
            sender.deliver(notification["message"])
            notification["slack"] = "posted"
        except SlackDeliveryError as exc:
            notification["slack"] = f"failed: {exc}"


def _first_account(documents: list[tuple[str, object]]) -> str:
    """The embedded AWS poses as the account of the first readable event (the responder's own)."""
    for _, document in documents:
        with suppress(InvalidEventError):
            return parse_event(document).account or EMBEDDED_ACCOUNT
    return EMBEDDED_ACCOUNT


def _run(
    documents: list[tuple[str, object]],
    session: boto3.session.Session,
    aws: EmbeddedAws | None,
    slack_webhook: str | None = None,
) -> list[dict[str, Any]]:
    recorder = CallRecorder()
    recorder.attach(session)
    use_runtime(Runtime(settings=Settings.from_env(), aws=AwsClients(session=session)))
    handler = load_handler()
    results = []
    try:
        for where, document in documents:
            result = _replay_one(where, document, handler, recorder, aws)
            _preview_in_slack(result, slack_webhook)
            results.append(result)
    finally:
        use_runtime(None)
    return results


def _replay_one(
    where: str, document: object, handler: Handler, recorder: CallRecorder, aws: EmbeddedAws | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "source": where,
        "event_id": None,
        "category": None,
        "severity": None,
        "decision": None,
        "status": None,
        "calls": [],
        "error": None,
        "verified": None,
        "notifications": [],
    }
    if isinstance(document, InvalidEventError):
        result["error"] = str(document)
        return result
    agent = None
    if aws is not None:
        with suppress(InvalidEventError):  # the handler will say what is wrong with it
            agent = aws.agent_session(parse_event(document))
    denied_before = agent_is_denied(agent) if agent is not None else None
    recorder.start()
    try:
        summary = handler(document, LambdaContext())  # type: ignore[arg-type]
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        summary = {}
    finally:
        # In Lambda each invocation flushes its metrics; with metrics disabled nothing does.
        metrics.clear_metrics()
    result["calls"] = list(recorder.calls)
    for key in (
        "event_id",
        "category",
        "severity",
        "decision",
        "status",
        "rule_ids",
        "reason",
        "incident_id",
        "containment_ms",
        "notes",
        "thresholds",
    ):
        if key in summary:
            result[key] = summary[key]
    if aws is not None:
        messages = aws.published()
        result["notifications"] = [
            {"subject": subject(m), "kind": m["kind"], "status": m["status"], "message": m} for m in messages
        ]
    if summary.get("decision") == "contain" and agent is not None:
        # Proof, not assertion: the agent's own session tries a harmless call after the handler returns.
        # A fresh containment counts only if the same call worked before it.
        denied_after = agent_is_denied(agent)
        fresh = summary.get("status") == "contained"
        result["verified"] = denied_after and not (fresh and denied_before)
    if summary.get("status") == "quarantined":
        result["error"] = summary.get("error")
    return result
