"""SNS messages as subscribers receive them, summaries of later events, and Slack delivery against a real
local HTTP server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from guardrail.operate.replay import EmbeddedAws, invoke, load_handler, replay
from guardrail.report.slack_delivery import BotDelivery, SlackDeliveryError, SlackThreads, WebhookDelivery
from guardrail.respond.release import release
from tests.conftest import EVENTS
from tests.integration.conftest import ACCOUNT, Responder, critical, denied, fresh_id
from tests.integration.slack_server import FakeSlack, Scripted
from tests.unit.test_notify import hostile_event, message_for


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _sqs_inbox(aws: EmbeddedAws, raw: bool = False) -> str:
    session = aws.session()
    sqs = session.client("sqs")
    url = sqs.create_queue(QueueName=f"inbox-{fresh_id()[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    session.client("sns").subscribe(
        TopicArn=aws.settings_env["GUARDRAIL_TOPIC_ARN"], Protocol="sqs", Endpoint=arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )  # fmt: skip
    return url


def _drain(aws: EmbeddedAws, url: str) -> list[dict[str, Any]]:
    sqs = aws.session().client("sqs")
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for item in batch:
            found.append(json.loads(item["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=item["ReceiptHandle"])
    return found


def test_sns_subscribers_get_json_email_text_and_filterable_attributes(responder: Responder) -> None:
    inbox = _sqs_inbox(responder.aws)
    published: list[dict[str, Any]] = []
    responder.runtime.aws.session.events.register(  # type: ignore[union-attr]
        "provide-client-params.sns.Publish", lambda params, **_: published.append(dict(params))
    )
    event = critical("rules/cloudtrail.logging-stopped.json")
    responder.agent(event)
    summary = responder(event)

    delivered, damage = _drain(responder.aws, inbox)
    assert delivered["Subject"] == "[CRITICAL][CONTAINED] AIAgentRole: StopLogging"
    # Then, after the containment and its message, the damage report in a message of its own.
    assert damage["Subject"] == "[CRITICAL][CONTAINED][DAMAGE] AIAgentRole: StopLogging"
    assert json.loads(damage["Message"])["damage"]["counts"]["undo"] == 1
    document = json.loads(delivered["Message"])
    assert (document["schema"], document["version"], document["kind"]) == (
        "guardrail-responder/incident",
        1,
        "incident",
    )
    assert document["incident_id"] == summary["incident_id"]
    assert document["containment"]["actions"][0]["action"] == "put_role_deny_all"
    assert document["event"]["agent_tool"] == "Claude Code (via AWS CLI)"
    attributes = {k: v["Value"] for k, v in delivered["MessageAttributes"].items()}
    assert attributes == {"severity": "critical", "category": "guardrail_tampering", "decision": "contain",
                          "status": "contained", "kind": "incident", "environment": "production", "account": ACCOUNT}  # fmt: skip
    params, _ = published  # the incident, then its damage report
    email = json.loads(params["Message"])["email"]
    assert "WHAT WAS DONE\n  CONTAINED" in email
    assert "RELEASE (after investigation)" in email
    # The IAM write came before the publish.
    operations = [c["operation"] for c in responder.calls]
    assert operations.index("PutRolePolicy") < operations.index("Publish")


def test_later_events_are_summarised_at_most_once_a_minute(responder: Responder) -> None:
    inbox = _sqs_inbox(responder.aws)
    now = [datetime.now(UTC)]
    responder.runtime.clock = lambda: now[0]
    responder.agent(critical())
    assert responder(critical(event_id=fresh_id()))["status"] == "contained"
    for _ in range(57):
        now[0] += timedelta(milliseconds=500)
        assert responder(critical("rules/s3.objects-deleted.json", event_id=fresh_id()))["status"] == "joined"
    now[0] += timedelta(seconds=35)  # 63.5 s after the first message
    responder(critical("rules/dynamodb.table-deleted.json", event_id=fresh_id()))
    responder(
        critical("rules/dynamodb.table-deleted.json", event_id=fresh_id())
    )  # within the next minute: counted only

    messages = [json.loads(m["Message"]) for m in _drain(responder.aws, inbox)]
    assert [m["kind"] for m in messages] == ["incident", "damage", "update"]
    update = messages[2]
    assert update["counts"]["since_last_update"] == 58
    assert update["counts"]["by_event_name"] == {"DeleteObjects": 57, "DeleteTable": 1}
    # The lock keeps whole seconds, so the window reads 63 or 64 s.
    assert update["counts"]["summary"].startswith("+58 more calls by AIAgentRole in the last 6")
    assert "s: DeleteObjects x57, DeleteTable x1" in update["counts"]["summary"]
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.event_count == 60


def test_a_failed_publish_fails_the_invocation_and_the_retry_announces(responder: Responder) -> None:
    inbox = _sqs_inbox(responder.aws)
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    good_topic = responder.runtime.settings.topic_arn
    object.__setattr__(responder.runtime.settings, "topic_arn", good_topic + "-missing")
    with pytest.raises(Exception, match="NotFound|does not exist"):
        responder(event)
    # contained already: the notification failing did not undo or delay it
    assert denied(lambda: agent.client("s3").list_buckets())
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]

    object.__setattr__(responder.runtime.settings, "topic_arn", good_topic)
    assert responder(event)["status"] == "notified_on_retry"  # Lambda's retry of the same event
    assert responder(event)["status"] == "duplicate"
    (message,) = _drain(responder.aws, inbox)
    assert json.loads(message["Message"])["status"] == "contained"
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]


def test_release_is_announced(responder: Responder) -> None:
    inbox = _sqs_inbox(responder.aws)
    responder.agent(critical())
    responder(critical())
    release(f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole", "reviewed: safe", "jane", responder.runtime)
    kinds = [json.loads(m["Message"])["kind"] for m in _drain(responder.aws, inbox)]
    assert kinds == ["incident", "damage", "release"]


def test_notify_decisions_are_reported_once_per_finding(responder: Responder) -> None:
    inbox = _sqs_inbox(responder.aws)
    statuses = [
        responder(critical("access-denied/s3-delete-bucket-denied.json", event_id=fresh_id()))["status"]
        for _ in range(5)
    ]
    assert statuses == ["reported", "joined", "joined", "joined", "joined"]
    (message,) = _drain(responder.aws, inbox)
    assert json.loads(message["Message"])["status"] == "reported"


# --- Slack --------------------------------------------------------------------------------------------


def test_webhook_posts_rendered_blocks(slack: FakeSlack) -> None:
    WebhookDelivery(slack.url + "/services/T/B/x").deliver(
        message_for(critical("rules/cloudtrail.logging-stopped.json"))
    )
    (request,) = slack.requests
    assert request["path"] == "/services/T/B/x"
    assert request["payload"]["blocks"][0]["text"]["text"].endswith("CRITICAL | CONTAINED | AIAgentRole")


def test_webhook_honours_429_retry_after(slack: FakeSlack) -> None:
    slack.script.append(Scripted(status=429, headers={"Retry-After": "1"}, body="rate_limited"))
    WebhookDelivery(slack.url + "/hook").deliver(message_for(critical()))
    assert slack.paths() == ["/hook", "/hook"]


def test_webhook_server_error_after_retries_raises(slack: FakeSlack) -> None:
    slack.script.extend(Scripted(status=500, body="boom") for _ in range(3))
    with pytest.raises(SlackDeliveryError, match="answered 500"):
        WebhookDelivery(slack.url + "/hook").deliver(message_for(critical()))
    assert len(slack.requests) == 3


def test_webhook_timeout_raises(slack: FakeSlack) -> None:
    slack.script.extend(Scripted(delay=2.5) for _ in range(3))
    with pytest.raises(SlackDeliveryError, match="unreachable"):
        WebhookDelivery(slack.url + "/hook", timeout=1).deliver(message_for(critical()))


def test_connection_refused_raises() -> None:
    with pytest.raises(SlackDeliveryError, match="unreachable"):
        WebhookDelivery("http://127.0.0.1:9/hook", timeout=1).deliver(message_for(critical()))


def test_hostile_event_reaches_slack_as_text(slack: FakeSlack) -> None:
    WebhookDelivery(slack.url + "/hook").deliver(message_for(hostile_event()))
    body = json.dumps(slack.requests[0]["payload"])
    assert "<!channel>" not in body
    assert "<@U123>" not in body
    assert "&lt;!channel&gt;" in body


def test_bot_mode_threads_updates_and_edits_the_parent(slack: FakeSlack, account: EmbeddedAws) -> None:
    threads = SlackThreads(account.session().client("dynamodb"), "guardrail-state")
    bot = BotDelivery("xoxb-test-token", "C0123", threads, api_url=slack.url + "/api/")
    first = message_for(critical("rules/cloudtrail.logging-stopped.json"))
    update = {
        **first,
        "kind": "update",
        "counts": {"events": 58, "summary": "+57 more calls by AIAgentRole in the last 60 s"},
    }
    released = {**first, "kind": "release", "status": "released"}
    bot.deliver(first)
    bot.deliver(update)
    bot.deliver(released)
    assert slack.paths() == [
        "/api/chat.postMessage",
        "/api/chat.postMessage",
        "/api/chat.update",
        "/api/chat.postMessage",
    ]
    # The fake answers ts 1700000000.000100 + n for its n-th request: the parent is the first post.
    parent_ts = "1700000001.000100"
    assert "thread_ts" not in slack.requests[0]["payload"]
    replies = [r["payload"] for r in slack.requests[1:] if r["path"].endswith("postMessage")]
    assert [r["thread_ts"] for r in replies] == [parent_ts, parent_ts]  # the update and the release
    assert slack.requests[2]["payload"]["ts"] == parent_ts  # the parent is edited in place
    assert "+57 more calls" in json.dumps(replies[0])
    assert slack.requests[0]["auth"] == "Bearer xoxb-test-token"


def test_bot_mode_bad_token_raises_without_the_token(slack: FakeSlack, account: EmbeddedAws) -> None:
    slack.script.append(Scripted(body=json.dumps({"ok": False, "error": "invalid_auth"})))
    threads = SlackThreads(account.session().client("dynamodb"), "guardrail-state")
    bot = BotDelivery("xoxb-secret-token", "C0123", threads, api_url=slack.url + "/api/")
    with pytest.raises(SlackDeliveryError) as info:
        bot.deliver(message_for(critical()))
    assert "invalid_auth" in str(info.value)
    assert "xoxb-secret-token" not in str(info.value)


def test_notifier_function_end_to_end(
    slack: FakeSlack, account: EmbeddedAws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = slack.url + "/services/T000/B000/secret-part"
    arn = (
        account.session()
        .client("secretsmanager")
        .create_secret(Name="guardrail/slack", SecretString=json.dumps({"webhook_url": secret}))["ARN"]
    )
    monkeypatch.setenv("GUARDRAIL_SLACK_MODE", "webhook")
    monkeypatch.setenv("GUARDRAIL_SLACK_SECRET_ARN", arn)
    parameters.clear_caches()
    message = message_for(critical("rules/kms.key-deletion-scheduled.json"))
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message), "Subject": "s"}}]}
    handler = load_handler("slack_notifier")
    assert invoke(handler, event) == {"delivered": [{"mode": "webhook", "posted": True}]}
    assert slack.paths() == ["/services/T000/B000/secret-part"]

    slack.script.extend(Scripted(status=500, body="down") for _ in range(3))
    with caplog.at_level(logging.INFO), pytest.raises(SlackDeliveryError):
        invoke(handler, event)  # fails the invocation: Lambda retries, then the failure destination keeps it
    assert "A retry handler found" in caplog.text  # slack_sdk did log the request...
    assert "secret-part" not in caplog.text  # ...without the webhook URL, which is the secret
    parameters.clear_caches()


def test_replay_previews_alerts_in_a_slack_webhook(slack: FakeSlack) -> None:
    results = replay(
        [EVENTS / "rules" / "kms.key-deletion-scheduled.json"], slack_webhook=slack.url + "/hook"
    )
    notification, damage = results[0]["notifications"]
    assert notification["slack"] == damage["slack"] == "posted"
    assert notification["subject"] == "[CRITICAL][CONTAINED] AIAgentRole: ScheduleKeyDeletion"
    assert damage["subject"] == "[CRITICAL][CONTAINED][DAMAGE] AIAgentRole: ScheduleKeyDeletion"
    assert len(slack.requests) == 2


def test_notifier_refuses_an_unreadable_message_loudly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from guardrail.errors import InvalidEventError  # noqa: PLC0415

    monkeypatch.setenv("GUARDRAIL_SLACK_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:111122223333:secret:x")
    handler = load_handler("slack_notifier")
    for record, reason in (
        ({"Sns": {"Message": "not json"}}, "not an SNS record with a JSON message"),
        (
            {"Sns": {"Message": json.dumps({"schema": "something-else"})}},
            "is not a guardrail-responder/incident document",
        ),
        (
            {"Sns": {"Message": json.dumps({"schema": "guardrail-responder/incident", "version": 9})}},
            "unsupported",
        ),
    ):
        with caplog.at_level(logging.ERROR), pytest.raises(InvalidEventError, match=reason):
            invoke(handler, {"Records": [record]})
        assert "unreadable incident message" in caplog.text


def test_bot_mode_posts_the_damage_report_in_the_incidents_thread(
    slack: FakeSlack, make_responder: Any
) -> None:
    responder = make_responder()
    event = critical("rules/cloudtrail.logging-stopped.json")
    responder.agent(event)
    responder(event)
    incident, damage = responder.aws.published()  # as the topic delivered them to its subscribers
    assert (incident["kind"], damage["kind"]) == ("incident", "damage")
    threads = SlackThreads(responder.aws.session().client("dynamodb"), "guardrail-state")
    bot = BotDelivery("xoxb-test-token", "C0123", threads, api_url=slack.url + "/api/")
    bot.deliver(incident)
    bot.deliver(damage)
    assert slack.paths() == ["/api/chat.postMessage", "/api/chat.postMessage"]  # a reply, no edit
    reply = slack.requests[1]["payload"]
    assert reply["thread_ts"] == "1700000001.000100"
    blocks = json.dumps(reply["blocks"])
    assert "What the agent changed" in blocks
    assert "StopLogging" in blocks
    assert "Start logging again" in blocks
