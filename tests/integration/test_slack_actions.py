"""Acting from the alert: real signed Slack requests to the interactivity endpoint (functions/slack_actions),
the queue on moto, the worker (functions/release) under enforced IAM, and the local Slack server.

Every request is built as Slack builds it (tests/slack_requests.py): the form-encoded `payload=` body,
signed by hand with HMAC-SHA256, delivered as a function URL event (plain or base64).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from guardrail.incident import IncidentStatus, iso_time
from guardrail.operate.cli import main
from guardrail.operate.replay import find_project_file, invoke, load_handler
from guardrail.report.slack import ACKNOWLEDGE, APPROVE_RELEASE, CONTAIN_NOW, RELEASE
from tests.integration.conftest import ACCOUNT, Responder, critical, denied
from tests.integration.slack_server import FakeSlack
from tests.slack_requests import (
    ALICE,
    BOB,
    MALLORY,
    SIGNING_SECRET,
    TEAM,
    block_action,
    form_body,
    function_url_event,
    view_submission,
)

ROLE = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _module(function: str) -> ModuleType:
    """functions/<function>/app.py as Lambda imports it: a fresh module, so its per-container caches are
    this test's."""
    path = find_project_file(f"functions/{function}/app.py")
    spec = importlib.util.spec_from_file_location(f"guardrail_{function}_test_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Deployment:
    """The stack's Slack side on the embedded account: secret, queue, endpoint, worker and notifier."""

    def __init__(
        self, responder: Responder, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, approvals: int = 1
    ) -> None:
        self.responder, self.slack = responder, slack
        session = responder.aws.session()
        secret = json.dumps({"bot_token": "xoxb-test-token", "signing_secret": SIGNING_SECRET})
        arn = session.client("secretsmanager").create_secret(Name="guardrail/slack-app", SecretString=secret)[
            "ARN"
        ]
        self.sqs = session.client("sqs")
        self.queue = self.sqs.create_queue(QueueName="guardrail-slack-actions")["QueueUrl"]
        for name, value in {
            "GUARDRAIL_SLACK_SECRET_ARN": arn,
            "GUARDRAIL_SLACK_MODE": "bot",
            "GUARDRAIL_SLACK_CHANNEL": "C0123",
            "GUARDRAIL_STATE_TABLE": "guardrail-state",
            "GUARDRAIL_SLACK_ACTIONS": "true",
            "GUARDRAIL_SLACK_API_URL": slack.url + "/api/",
            "GUARDRAIL_SLACK_ACTIONS_QUEUE_URL": self.queue,
            "GUARDRAIL_SLACK_ALLOWED_USERS": f"{ALICE},{BOB}",
            "GUARDRAIL_SLACK_RELEASE_APPROVALS": str(approvals),
            "GUARDRAIL_RESPONDER_FUNCTION": "guardrail-responder",
        }.items():
            monkeypatch.setenv(name, value)
        parameters.clear_caches()
        # Contain now runs in the responder: here its real handler, in-process, instead of lambda:Invoke.
        responder_handler = load_handler("responder")
        monkeypatch.setattr(
            "guardrail.respond.people.invoke_responder",
            lambda function, client: lambda request: invoke(responder_handler, request),
        )
        self.endpoint = _module("slack_actions")
        self.worker = load_handler("release")
        self.notifier = load_handler("slack_notifier")

    def post(self, event: dict[str, Any]) -> dict[str, Any]:
        """One request to the function URL; the worker then takes what was queued, as SQS would."""
        answer = invoke(self.endpoint.handler, event)
        self.results = self.work()
        return answer

    def click(self, action_id: str, incident_id: str, user: str = ALICE, **kwargs: Any) -> dict[str, Any]:
        return self.post(function_url_event(form_body(block_action(action_id, incident_id, user)), **kwargs))

    def submit(self, incident_id: str, reason: str | None, user: str = ALICE) -> dict[str, Any]:
        return self.post(function_url_event(form_body(view_submission(incident_id, reason, user))))

    def queued(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def work(self) -> list[dict[str, Any]]:
        results = []
        for message in self.queued():
            record = {"messageId": message["MessageId"], "body": message["Body"], "eventSource": "aws:sqs"}
            results.append(invoke(self.worker, {"Records": [record]}))
        return results

    def notify(self) -> None:
        """What the topic published, through the Slack notifier (bot mode), as SNS would deliver it."""
        for message in self.responder.aws.published():
            record = {"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message), "Subject": "s"}}
            invoke(self.notifier, {"Records": [record]})

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.slack.requests if r["path"] == f"/api/{method}"]


@pytest.fixture
def deployment(
    make_responder: Any, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    yield Deployment(make_responder(), slack, monkeypatch)
    parameters.clear_caches()


def _contained(deployment: Deployment) -> tuple[str, Any]:
    """The agent contained by the responder, its incident posted to Slack with the buttons."""
    event = critical()
    agent = deployment.responder.agent(event)
    summary = deployment.responder(event)
    assert summary["status"] == "contained"
    deployment.notify()
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="while-contained"))
    return summary["incident_id"], agent


def _action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e.get("action_id", "") for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_release_from_slack_releases_under_enforced_iam_and_updates_the_thread(
    deployment: Deployment,
) -> None:
    incident_id, agent = _contained(deployment)
    first = deployment.calls("chat.postMessage")[0]
    assert _action_ids(first["blocks"])[:2] == [ACKNOWLEDGE, RELEASE]

    assert deployment.click(ACKNOWLEDGE, incident_id)["statusCode"] == 200
    updated = deployment.calls("chat.update")[-1]
    assert f"Acknowledged by <@{ALICE}>" in json.dumps(updated["blocks"])
    assert ACKNOWLEDGE not in _action_ids(updated["blocks"])
    assert f"<@{ALICE}> acknowledged" in deployment.calls("chat.postMessage")[-1]["text"]

    assert deployment.click(RELEASE, incident_id)["statusCode"] == 200
    (opened,) = deployment.calls("views.open")
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert (view["callback_id"], view["private_metadata"]) == ("guardrail_release_reason", incident_id)
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="modal-open"))  # opening changes nothing

    answer = deployment.submit(incident_id, "false positive: approved migration")
    assert (answer["statusCode"], answer["body"]) == (200, "")  # the modal closes
    assert deployment.results == [{"batchItemFailures": []}]
    assert agent.client("s3").create_bucket(Bucket="after-slack-release")  # really released
    runtime = deployment.responder.runtime
    incident = runtime.store.records.get(incident_id)
    assert incident is not None
    assert incident.status is IncidentStatus.RELEASED
    assert incident.released_by == f"slack:{TEAM}/{ALICE} (@alice)"
    assert incident.release_reason == "false positive: approved migration"
    trail = runtime.store.audit.trail(incident_id)
    kinds = [a["kind"] for a in trail]
    assert kinds == ["contain", "damage_report", "acknowledged", "release"]
    release = trail[-1]
    assert release["details"]["evidence"]["slack"] == {"team_id": TEAM, "user_id": ALICE, "name": "alice"}
    assert all(a["request_ids"] for a in release["details"]["undone"])  # the AWS request ids of the undo

    deployment.notify()  # the release message, as the topic delivers it to the notifier
    parent = deployment.calls("chat.update")[-1]
    assert "Released" in json.dumps(parent["blocks"])
    assert _action_ids(parent["blocks"]) == []
    note = deployment.calls("chat.postMessage")[-1]
    assert note["thread_ts"] == first_ts(deployment)
    assert f"slack:{TEAM}/{ALICE} (@alice): false positive" in note["text"]


def first_ts(deployment: Deployment) -> str:
    """The fake answers ts 1700000000.000100 + n to its n-th request: the parent is the first post."""
    assert deployment.slack.requests[0]["path"] == "/api/chat.postMessage"
    return "1700000001.000100"


def test_a_duplicate_submission_releases_once(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    deployment.submit(incident_id, "checked: safe")
    deployment.submit(incident_id, "checked: safe")  # a double click: a second, differently signed request
    runtime = deployment.responder.runtime
    assert [a["kind"] for a in runtime.store.audit.trail(incident_id)].count("release") == 1
    (told,) = deployment.calls("chat.postEphemeral")
    assert told["user"] == ALICE
    assert "Already released" in told["text"]
    assert agent.client("s3").create_bucket(Bucket="released-once")


def test_the_same_request_delivered_twice_is_one_job(deployment: Deployment) -> None:
    incident_id, _agent = _contained(deployment)
    event = function_url_event(form_body(view_submission(incident_id, "checked: safe")))
    invoke(deployment.endpoint.handler, event)
    invoke(deployment.endpoint.handler, event)  # Slack's retry, or a replay inside the five minutes
    first, second = deployment.queued()
    for message in (first, second, first):  # and SQS delivering one of them twice
        record = {"messageId": message["MessageId"], "body": message["Body"], "eventSource": "aws:sqs"}
        invoke(deployment.worker, {"Records": [record]})
    trail = deployment.responder.runtime.store.audit.trail(incident_id)
    assert [a["kind"] for a in trail].count("release") == 1


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (lambda body: function_url_event(body, sign="v0=" + "0" * 64), 401),  # wrong signature
        (lambda body: function_url_event(body, secret="another-apps-secret"), 401),  # another app's secret
        (lambda body: function_url_event(body, timestamp=str(int(time.time()) - 301)), 401),  # stale
        (
            lambda body: {
                **function_url_event(body),
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            401,
        ),
        (lambda body: function_url_event(body + "x" * 140_000), 400),  # oversized, even if signed
        (lambda body: function_url_event("payload=%7Bnot-json"), 400),  # malformed, but signed
        (lambda body: function_url_event(body, content_type="application/json"), 400),
        (lambda body: function_url_event(body, method="GET"), 400),
        (lambda body: {**function_url_event(body, base64_body=True), "body": "%%%not-base64"}, 400),
    ],
    ids=[
        "wrong-signature",
        "other-secret",
        "stale",
        "unsigned",
        "oversized",
        "malformed",
        "json",
        "get",
        "bad-base64",
    ],
)
def test_bad_requests_are_refused_and_release_nothing(
    deployment: Deployment, event: Any, status: int
) -> None:
    incident_id, agent = _contained(deployment)
    before = len(deployment.slack.requests)
    answer = deployment.post(event(form_body(view_submission(incident_id, "let me out"))))
    assert answer["statusCode"] == status
    assert deployment.results == []  # nothing was queued
    assert len(deployment.slack.requests) == before  # nor anything said in Slack
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))


def test_a_replay_after_five_minutes_is_refused(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    ack = function_url_event(form_body(block_action(ACKNOWLEDGE, incident_id)))
    assert deployment.post(ack)["statusCode"] == 200
    assert len(deployment.results) == 1
    submit = function_url_event(form_body(view_submission(incident_id, "captured and replayed")))
    endpoint = deployment.endpoint.endpoint()
    endpoint.clock = lambda: time.time() + 301  # the same bytes, five minutes and a second later
    assert deployment.post(submit)["statusCode"] == 401
    assert deployment.results == []
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))


def test_a_base64_body_is_verified_as_the_bytes_slack_sent(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    body = form_body(view_submission(incident_id, "checked: the agent's ticket was approved"))
    assert deployment.post(function_url_event(body, base64_body=True))["statusCode"] == 200
    assert agent.client("s3").create_bucket(Bucket="released-from-base64")


def test_an_unknown_user_is_told_and_logged_and_releases_nothing(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    incident_id, agent = _contained(deployment)
    with caplog.at_level("WARNING"):
        answer = deployment.submit(incident_id, "trust me", user=MALLORY)
        deployment.click(ACKNOWLEDGE, incident_id, user=MALLORY)
    assert json.loads(answer["body"])["errors"]["reason"].startswith("You are not allowed")
    assert deployment.results == []
    (told,) = deployment.calls("chat.postEphemeral")
    assert told["user"] == MALLORY
    assert "not allowed" in told["text"]
    refusals = [r for r in caplog.records if r.getMessage() == "Slack action refused: user not allowed"]
    assert [(r.actor["user_id"], r.action) for r in refusals] == [
        (MALLORY, "release"),
        (MALLORY, "acknowledge"),
    ]
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))


def test_a_missing_reason_releases_nothing(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    for reason in (None, "   "):
        answer = deployment.submit(incident_id, reason)
        assert json.loads(answer["body"]) == {
            "response_action": "errors",
            "errors": {"reason": "A reason is required: what you found, and why it is safe."},
        }
    assert deployment.results == []
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))


def test_a_job_put_on_the_queue_by_anyone_else_releases_nothing(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    body = form_body(view_submission(incident_id, "forged"))
    forged = {
        "request": {
            "body": body,
            "timestamp": str(int(time.time())),
            "signature": "v0=" + "a" * 64,
            "content_type": "application/x-www-form-urlencoded",
        },
        "received_at": time.time(),
    }
    deployment.sqs.send_message(QueueUrl=deployment.queue, MessageBody=json.dumps(forged))
    deployment.sqs.send_message(QueueUrl=deployment.queue, MessageBody="{not a job")
    results = deployment.work()
    assert results[0] == {"batchItemFailures": []}  # read, refused, consumed
    assert len(results[1]["batchItemFailures"]) == 1  # unreadable: kept for the dead-letter queue
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))


def test_two_person_release(make_responder: Any, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = Deployment(make_responder(), slack, monkeypatch, approvals=2)
    incident_id, agent = _contained(deployment)
    deployment.submit(incident_id, "the agent's change was approved in CHG-1234")
    assert deployment.results[0] == {"batchItemFailures": []}
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="asked-not-approved"))
    asked = deployment.calls("chat.update")[-1]
    assert f"Release requested by <@{ALICE}>" in json.dumps(asked["blocks"])
    assert APPROVE_RELEASE in _action_ids(asked["blocks"])
    assert RELEASE not in _action_ids(asked["blocks"])

    deployment.click(APPROVE_RELEASE, incident_id, user=ALICE)  # the requester cannot approve
    assert "different person" in deployment.calls("chat.postEphemeral")[-1]["text"]
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="self-approved"))

    deployment.click(APPROVE_RELEASE, incident_id, user=BOB)
    assert agent.client("s3").create_bucket(Bucket="approved-by-bob")
    incident = deployment.responder.runtime.store.records.get(incident_id)
    assert incident is not None
    assert incident.status is IncidentStatus.RELEASED
    assert incident.released_by == f"slack:{TEAM}/{BOB} (@bob), approving slack:{TEAM}/{ALICE} (@alice)"
    assert incident.release_reason == "the agent's change was approved in CHG-1234"
    kinds = [a["kind"] for a in deployment.responder.runtime.store.audit.trail(incident_id)]
    assert kinds == ["contain", "damage_report", "release_requested", "release"]
    parameters.clear_caches()


def test_contain_now_contains_a_reported_agent(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    event = critical("rules/generic.grants-to-another.json")
    agent = deployment.responder.agent(event)
    summary = deployment.responder(event)
    assert summary["status"] == "reported"
    report_id = summary["incident_id"]
    deployment.notify()
    posted = deployment.calls("chat.postMessage")[0]
    assert CONTAIN_NOW in _action_ids(posted["blocks"])
    assert agent.client("s3").create_bucket(Bucket="only-reported")

    deployment.click(CONTAIN_NOW, report_id, user=BOB)
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="contained-by-bob"))
    runtime = deployment.responder.runtime
    held = runtime.store.records.open_for(ROLE)
    assert held is not None
    assert held.status is IncidentStatus.CONTAINED
    incident = runtime.store.records.get(held.incident_id)
    assert incident is not None
    assert incident.contained_by is not None
    assert (incident.contained_by["user_id"], incident.contained_by["report"]) == (BOB, report_id)
    assert f"contained by slack:{TEAM}/{BOB} (@bob) from Slack" in incident.reason
    assert runtime.store.audit.trail(incident.id)[0]["details"]["contained_by"]["user_id"] == BOB
    report = runtime.store.records.get(report_id)
    assert report is not None
    assert report.followed_by == incident.id
    shown = deployment.calls("chat.update")[-1]  # the report's message: who contained, and as what
    assert f"Contained from Slack: incident `{incident.id}`" in json.dumps(shown["blocks"])
    assert CONTAIN_NOW not in _action_ids(shown["blocks"])

    deployment.click(CONTAIN_NOW, report_id, user=ALICE)  # a second click: held already
    assert incident.id in deployment.calls("chat.postEphemeral")[-1]["text"]
    assert [i.id for i in runtime.store.records.incidents() if i.status is IncidentStatus.CONTAINED] == [
        incident.id
    ]

    assert main(["incidents"]) == 0
    listing = capsys.readouterr().out
    assert "contained by @bob" in listing
    assert f"contained as {incident.id}" in listing


def test_incidents_lists_who_acted_from_slack(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    incident_id, _agent = _contained(deployment)
    deployment.click(ACKNOWLEDGE, incident_id, user=BOB)
    deployment.submit(incident_id, "safe", user=ALICE)
    assert main(["incidents"]) == 0
    listing = capsys.readouterr().out
    assert "acknowledged by @bob" in listing
    assert "released by @alice" in listing
    assert main(["incidents", incident_id]) == 0
    trail = capsys.readouterr().out
    assert "acknowledged" in trail
    assert f"slack:{TEAM}/{BOB} (@bob)" in trail
    assert "release" in trail


def test_a_release_under_way_blocks_a_second_one_until_it_is_abandoned(deployment: Deployment) -> None:
    incident_id, agent = _contained(deployment)
    store = deployment.responder.runtime.store
    now = deployment.responder.runtime.clock()
    claim = "SET releasing = :job, releasing_at = :at"
    store.acted(
        incident_id, claim, "attribute_not_exists(releasing)", {":job": "f" * 32, ":at": iso_time(now)}
    )
    deployment.submit(incident_id, "a second person, meanwhile")
    assert "already under way" in deployment.calls("chat.postEphemeral")[-1]["text"]
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="still-contained"))

    # The worker that claimed it died and its job is gone: ten minutes on, the claim no longer holds.
    store.acted(
        incident_id,
        claim,
        "releasing = :job",
        {":job": "f" * 32, ":at": iso_time(now - timedelta(minutes=11))},
    )
    deployment.submit(incident_id, "the first worker died")
    assert agent.client("s3").create_bucket(Bucket="released-after-abandoned-claim")


def test_a_release_request_expires_and_releases_nothing(
    make_responder: Any, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = Deployment(make_responder(), slack, monkeypatch, approvals=2)
    incident_id, agent = _contained(deployment)
    deployment.submit(incident_id, "asked long ago")
    store = deployment.responder.runtime.store
    incident = store.records.get(incident_id)
    assert incident is not None
    assert incident.release_request is not None
    old = iso_time(deployment.responder.runtime.clock() - timedelta(minutes=61))
    store.acted(
        incident_id, "SET release_request.#at = :at", "attribute_exists(release_request)", {":at": old}
    )
    deployment.click(APPROVE_RELEASE, incident_id, user=BOB)
    assert "expired" in deployment.calls("chat.postEphemeral")[-1]["text"]
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="expired-request"))
    shown = deployment.calls("chat.update")[-1]
    assert RELEASE in _action_ids(shown["blocks"])
    assert APPROVE_RELEASE not in _action_ids(shown["blocks"])
    kinds = [a["kind"] for a in store.audit.trail(incident_id)]
    assert kinds[-2:] == ["release_requested", "release_request_expired"]
    parameters.clear_caches()
