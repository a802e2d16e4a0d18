"""The Slack interactivity endpoint's decisions, with stand-ins for the secret, Slack and the queue: what
is refused before the secret is read, what is refused after, what is queued. Pure: no AWS, no network."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from guardrail.errors import ConfigurationError
from guardrail.report.slack import ACKNOWLEDGE, CONTAIN_NOW, RELEASE
from guardrail.respond.interactions import (
    MAX_BODY_BYTES,
    Endpoint,
    InteractionSettings,
    SlackJob,
    handle_request,
    intent_of,
)
from guardrail.respond.people import PeopleSettings
from tests.slack_requests import (
    ALICE,
    BOB,
    MALLORY,
    SIGNING_SECRET,
    block_action,
    form_body,
    function_url_event,
    view_submission,
)

INCIDENT = "GR-20261120T031250Z-0a1b2c3d"
NOW = 1_800_000_000  # the endpoint's clock in the refusal tests: timestamps relative to it, not to collection time


@dataclass
class FakeSlackApi:
    members: frozenset[str] = frozenset()
    fail: bool = False
    said: list[tuple[str, Any]] = field(default_factory=list)

    def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None:
        self.said.append(("modal", view))

    def tell(self, channel: str, user: str, text: str) -> None:
        self.said.append(("tell", (channel, user, text)))

    def group_members(self, group: str) -> frozenset[str]:
        self.said.append(("group", group))
        if self.fail:
            raise OSError("Slack unreachable")
        return self.members


@dataclass
class Stand:
    settings: InteractionSettings
    slack: FakeSlackApi = field(default_factory=FakeSlackApi)
    secret_reads: int = 0
    queued: list[SlackJob] = field(default_factory=list)
    now: float = field(default_factory=time.time)

    def endpoint(self) -> Endpoint:
        def secret() -> str:
            self.secret_reads += 1
            return SIGNING_SECRET

        return Endpoint(self.settings, secret, lambda: self.slack, self.queued.append, clock=lambda: self.now)


def settings(users: str = f"{ALICE},{BOB}", group: str = "") -> InteractionSettings:
    return InteractionSettings.from_env(
        {
            "GUARDRAIL_SLACK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:111122223333:secret:guardrail/slack-x",
            "GUARDRAIL_SLACK_ACTIONS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/111122223333/q",
            "GUARDRAIL_SLACK_ALLOWED_USERS": users,
            "GUARDRAIL_SLACK_ALLOWED_GROUP": group,
        }
    )


@pytest.mark.parametrize(
    ("event", "status", "why"),
    [
        (function_url_event("payload=" + "x" * MAX_BODY_BYTES), 400, "too large"),
        ({**function_url_event("payload=x"), "headers": {}}, 401, "no Slack signature"),
        (function_url_event("payload=x", sign="v1=abc"), 401, "no Slack signature"),
        (function_url_event("payload=x", timestamp="not-a-number"), 401, "no Slack signature"),
        (function_url_event("payload=x", timestamp=str(NOW - 301)), 401, "stale"),
        (function_url_event("payload=x", timestamp=str(NOW + 301)), 401, "stale"),
        (function_url_event("payload=x", method="PUT"), 400, "Slack posts"),
        ("not an event", 400, "not a function URL request"),
    ],
)
def test_refused_before_the_secret_is_read(event: Any, status: int, why: str) -> None:
    stand = Stand(settings(), now=NOW)
    answer = handle_request(event, stand.endpoint())
    assert (answer.status, why in answer.why) == (status, True)
    assert stand.secret_reads == 0  # no AWS call at all
    assert stand.queued == []
    assert stand.slack.said == []
    assert json.loads(answer.to_response()["body"]) == {"error": answer.why}


def test_a_bad_signature_costs_one_secret_read_and_nothing_else() -> None:
    stand = Stand(settings())
    event = function_url_event(form_body(block_action(ACKNOWLEDGE, INCIDENT)), secret="not-our-secret")
    assert handle_request(event, stand.endpoint()).status == 401
    assert stand.secret_reads == 1
    assert stand.queued == []
    assert stand.slack.said == []


def test_allowed_clicks_are_queued_as_the_signed_request_itself() -> None:
    stand = Stand(settings())
    body = form_body(block_action(CONTAIN_NOW, INCIDENT, user=BOB))
    assert handle_request(function_url_event(body), stand.endpoint()).status == 200
    (job,) = stand.queued
    assert job.request.body == body
    intent = intent_of(job.request)
    assert intent is not None
    assert (intent.action, intent.incident_id, intent.actor.user_id) == ("contain_now", INCIDENT, BOB)


def test_release_opens_the_modal_and_queues_nothing() -> None:
    stand = Stand(settings())
    handle_request(function_url_event(form_body(block_action(RELEASE, INCIDENT))), stand.endpoint())
    ((kind, view),) = stand.slack.said
    assert kind == "modal"
    assert view["private_metadata"] == INCIDENT
    assert stand.queued == []


def test_a_user_group_is_read_once_and_fails_closed() -> None:
    stand = Stand(settings(users="", group="S0ONCALL1"), slack=FakeSlackApi(members=frozenset({MALLORY})))
    endpoint = stand.endpoint()
    for _ in range(3):
        handle_request(
            function_url_event(form_body(block_action(ACKNOWLEDGE, INCIDENT, user=MALLORY))), endpoint
        )
    assert len(stand.queued) == 3
    assert [s for s in stand.slack.said if s[0] == "group"] == [("group", "S0ONCALL1")]  # cached

    broken = Stand(settings(users="", group="S0ONCALL1"), slack=FakeSlackApi(fail=True))
    handle_request(function_url_event(form_body(block_action(ACKNOWLEDGE, INCIDENT))), broken.endpoint())
    assert broken.queued == []
    assert [s[0] for s in broken.slack.said] == ["group", "tell"]


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": ALICE}, "team": {"id": "T1"}, "actions": []},  # bad team id
        {**block_action(ACKNOWLEDGE, "GR-not-an-incident")},
        {**block_action(ACKNOWLEDGE, INCIDENT), "user": {"id": "<!channel>"}},
        {**view_submission("../../etc", "x")},
    ],
)
def test_malformed_payloads_are_400(payload: dict[str, Any]) -> None:
    stand = Stand(settings())
    assert handle_request(function_url_event(form_body(payload)), stand.endpoint()).status == 400
    assert stand.queued == []


def test_link_buttons_and_other_interactions_are_acknowledged_and_ignored() -> None:
    stand = Stand(settings())
    for payload in (
        block_action("open_cloudtrail", INCIDENT),
        {**view_submission(INCIDENT, "x"), "type": "view_closed"},
    ):
        assert handle_request(function_url_event(form_body(payload)), stand.endpoint()).status == 200
    assert stand.queued == []
    assert stand.slack.said == []


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "GUARDRAIL_SLACK_SECRET_ARN"),
        ({"GUARDRAIL_SLACK_ALLOWED_USERS": "alice"}, "are not Slack user ids"),
        ({"GUARDRAIL_SLACK_ALLOWED_GROUP": "oncall"}, "is not a user group id"),
        ({"GUARDRAIL_SLACK_ALLOWED_USERS": " , "}, "nobody would be allowed to act"),
    ],
)
def test_settings_are_validated_with_a_clear_message(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        InteractionSettings.from_env(env)


def test_worker_settings_are_validated() -> None:
    assert PeopleSettings.from_env({}).approvals == 1
    with pytest.raises(ConfigurationError, match="not 1 or 2"):
        PeopleSettings.from_env({"GUARDRAIL_SLACK_RELEASE_APPROVALS": "3"})
    with pytest.raises(ConfigurationError, match="1 to 1440"):
        PeopleSettings.from_env({"GUARDRAIL_SLACK_APPROVAL_MINUTES": "0"})
