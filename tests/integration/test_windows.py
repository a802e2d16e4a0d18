"""Windows per principal and environment policies, through the real handler against moto (IAM enforced)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guardrail.detect.cloudtrail import parse_event
from guardrail.operate.replay import agent_is_denied
from guardrail.respond.release import release
from guardrail.respond.runtime import Runtime
from tests.conftest import load_event
from tests.integration.conftest import ACCOUNT, Responder, concurrently, container, fresh_id

START = datetime(2026, 11, 20, 3, 0, 5, tzinfo=UTC)


def at(relative: str, moment: datetime, event_id: str | None = None, **detail: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(relative))
    event["detail"]["eventID"] = event_id or fresh_id()
    event["detail"]["eventTime"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"].update(detail)
    return event


def environment(name: str) -> dict[str, str]:
    return {"GUARDRAIL_ACCOUNT_ENVIRONMENTS": json.dumps({ACCOUNT: name})}


def refused(moment: datetime, event_id: str | None = None) -> dict[str, Any]:
    return at("access-denied/iam-list-roles-denied.json", moment, event_id)  # low: ignored on its own


def table_items(responder: Responder) -> list[dict[str, Any]]:
    db = responder.runtime.aws.dynamodb
    table = responder.runtime.settings.state_table
    assert table is not None
    items, kwargs = [], {"TableName": table}
    while True:
        page = db.scan(**kwargs)  # type: ignore[arg-type]
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]  # type: ignore[assignment]


def test_a_burst_of_refused_calls_contains_the_agent_in_production(make_responder: Any) -> None:
    responder = make_responder()
    agent = responder.agent(refused(START))
    outcomes = [responder(refused(START + timedelta(seconds=i * 5))) for i in range(10)]

    # Each refusal alone is low and would be ignored; the first nine are only counted, without IAM.
    assert [o["status"] for o in outcomes[:9]] == ["counted"] * 9
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]
    tenth = outcomes[9]
    assert (tenth["status"], tenth["decision"], tenth["severity"]) == ("contained", "contain", "high")
    (hit,) = tenth["thresholds"]
    assert (hit["name"], hit["count"], hit["at"], hit["minutes"]) == ("access_denied_spike", 10, 10, 5)
    assert "access_denied_spike: 10 refused calls in 5 min (threshold 10)" in tenth["reason"]
    assert agent_is_denied(agent)

    message, damage = responder.aws.published()
    assert (message["kind"], message["status"]) == ("incident", "contained")
    assert message["thresholds"] == tenth["thresholds"]
    assert damage["kind"] == "damage"


def test_counts_older_than_the_window_do_not_count(make_responder: Any) -> None:
    responder = make_responder()
    for i in range(9):
        responder(refused(START + timedelta(seconds=i)))
    # Six minutes later the nine have left the 5-minute window: one more is one, not ten.
    late = responder(refused(START + timedelta(minutes=6)))
    assert late["status"] == "counted"
    assert responder.writes("iam") == []
    # Every bucket expires (DynamoDB TTL) a little after the longest window has passed it.
    buckets = [i for i in table_items(responder) if i["pk"]["S"].startswith("WINDOW#")]
    assert len(buckets) == 2
    for bucket in buckets:
        minute = int(bucket["sk"]["S"].removeprefix("M#"))
        assert int(bucket["expires_at"]["N"]) == (minute + 5 + 10) * 60


def test_a_redelivered_refusal_is_counted_once(make_responder: Any) -> None:
    responder = make_responder()
    event = refused(START)
    responder.agent(event)
    for _ in range(12):
        assert responder(event)["status"] in ("counted", "duplicate")
    for i in range(8):
        responder(refused(START + timedelta(seconds=i + 1)))
    assert responder.writes("iam") == []  # 9 distinct refusals, however often one was delivered
    assert responder(refused(START + timedelta(seconds=30)))["status"] == "contained"


def test_release_forgets_the_counts_that_contained(make_responder: Any) -> None:
    responder = make_responder()
    agent = responder.agent(refused(START))
    for i in range(10):
        responder(refused(START + timedelta(seconds=i)))
    assert agent_is_denied(agent)
    role = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    release(role, "probing was a misconfigured task; fixed", "oncall@example.com", responder.runtime)
    assert not agent_is_denied(agent)
    # The agent's next refusal, within the same five minutes, starts a new count.
    assert responder(refused(START + timedelta(seconds=20)))["status"] == "counted"
    assert not agent_is_denied(agent)


@pytest.mark.usefixtures("atomic_dynamodb_writes")
def test_a_concurrent_burst_that_fills_the_window_is_acted_on(account: Any) -> None:
    """Ten refusals handled at once: each reads the counts before any of them wrote, so none sees ten.
    The re-read after writing does, and the agent is contained with no eleventh event."""
    account.agent_session(parse_event(refused(START)))
    statuses, _ = concurrently(account, [refused(START + timedelta(seconds=i)) for i in range(10)])
    assert statuses["contained"] == 1, statuses
    runtime = container(account)
    (incident,) = runtime.store.records.incidents()
    assert incident.status.value == "contained"
    (bucket,) = [b for b in runtime.store.windows.read(_tally_for(runtime)).values()]
    assert bucket.access_denied == 10  # no lost counts


def _tally_for(runtime: Runtime) -> Any:
    from guardrail.detect.classifier import classify  # noqa: PLC0415
    from guardrail.detect.windows import tally_of  # noqa: PLC0415
    from guardrail.respond.containment import principal_key  # noqa: PLC0415

    verdict = classify(parse_event(refused(START)), runtime.settings)
    tally = tally_of(
        verdict, runtime.settings.policies[verdict.environment], principal_key(verdict.call.principal)
    )
    assert tally is not None
    return tally


# --- environments -------------------------------------------------------------------------------------


def test_development_reports_deletions_and_contains_a_volume_spike(make_responder: Any) -> None:
    responder = make_responder(environment("development"))
    agent = responder.agent(at("rules/s3.bucket-deleted.json", START))
    outcomes = [
        responder(at("rules/s3.bucket-deleted.json", START + timedelta(seconds=i))) for i in range(20)
    ]
    assert outcomes[0]["status"] == "reported"
    assert {o["status"] for o in outcomes[1:19]} == {"joined"}
    assert outcomes[19]["status"] == "contained"
    (hit,) = outcomes[19]["thresholds"]
    assert (hit["name"], hit["count"]) == ("destructive_volume", 20)
    assert outcomes[19]["severity"] == "critical"
    assert agent_is_denied(agent)
    # One report, then one containment and its damage report: three messages, not twenty.
    assert [(m["kind"], m["status"]) for m in responder.aws.published()] == [
        ("incident", "reported"),
        ("incident", "contained"),
        ("damage", "contained"),
    ]


def test_development_allows_deleting_an_ephemeral_instance(make_responder: Any) -> None:
    responder = make_responder(environment("development"))
    ec2 = responder.aws.session().client("ec2", region_name="eu-west-1")

    def instance(tags: list[dict[str, str]]) -> str:
        spec = [{"ResourceType": "instance", "Tags": tags}] if tags else []
        found = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=spec)
        instance_id = found["Instances"][0]["InstanceId"]
        ec2.terminate_instances(InstanceIds=[instance_id])  # terminated instances stay visible, tags too
        return instance_id

    def terminate(instance_id: str) -> dict[str, Any]:
        event = at("rules/ec2.instances-terminated.json", START)
        event["detail"]["awsRegion"] = "eu-west-1"
        event["detail"]["requestParameters"] = {"instancesSet": {"items": [{"instanceId": instance_id}]}}
        return responder(event)

    ephemeral = terminate(instance([{"Key": "Lifecycle", "Value": "ephemeral"}]))
    # Allowed, so not reported; still counted, since a spike of allowed deletions is still a spike.
    assert (ephemeral["status"], ephemeral["decision"]) == ("counted", "ignore")
    assert "agents may delete ephemeral resources in development" in ephemeral["reason"]
    kept = terminate(instance([{"Key": "Lifecycle", "Value": "persistent"}]))
    assert kept["decision"] == "notify"
    unknown = terminate("i-0000000000000dead")  # not describable: unknown, never in the agent's favour
    assert unknown["decision"] == "notify"
    assert "could not be known; treated as not ephemeral" in unknown["reason"]
    assert responder.writes("iam") == []


def test_sandbox_lets_agents_destroy_and_contains_logging_tampering(make_responder: Any) -> None:
    responder = make_responder(environment("sandbox"))
    agent = responder.agent(at("rules/s3.bucket-deleted.json", START))
    for i in range(30):
        outcome = responder(at("rules/s3.bucket-deleted.json", START + timedelta(seconds=i)))
        assert outcome["status"] == "ignored"
    # No window, no report: nothing but each call's line in the agent's flight record.
    assert [(c["service"], c["operation"]) for c in responder.calls] == [("dynamodb", "PutItem")] * 30
    flights = [i for i in table_items(responder) if i["pk"]["S"].startswith("FLIGHT#")]
    assert len(flights) == 30
    assert {i["event_name"]["S"] for i in flights} == {"DeleteBucket"}
    escalation = responder(at("rules/iam.admin-policy-attached.json", START))
    assert (escalation["status"], escalation["decision"]) == ("reported", "notify")
    tampering = responder(at("rules/cloudtrail.logging-stopped.json", START))
    assert tampering["status"] == "contained"
    assert "cloudtrail.logging-stopped always contains an agent in sandbox" in tampering["reason"]
    assert agent_is_denied(agent)


def test_staging_contains_a_successful_deletion_and_reports_a_failed_one(make_responder: Any) -> None:
    responder = make_responder(environment("staging"))
    agent = responder.agent(at("rules/s3.bucket-deleted.json", START))
    failed = responder(
        at("rules/s3.bucket-deleted.json", START, errorCode="BucketNotEmpty", errorMessage="not empty")
    )
    assert failed["decision"] == "notify"  # high, lowered to medium for the failure: by severity
    assert responder.writes("iam") == []
    done = responder(at("rules/s3.bucket-deleted.json", START + timedelta(seconds=1)))
    assert (done["status"], done["decision"]) == ("contained", "contain")
    assert "destructive call by an agent contains in staging" in done["reason"]
    assert agent_is_denied(agent)


def test_production_contains_an_agent_write_no_rule_flags(make_responder: Any) -> None:
    responder = make_responder()
    agent = responder.agent(at("benign/s3-create-bucket.json", START))
    outcome = responder(at("benign/s3-create-bucket.json", START))
    assert (outcome["category"], outcome["severity"], outcome["status"]) == ("write", "high", "contained")
    assert agent_is_denied(agent)
    read = responder(at("benign/s3-list-buckets.json", START))
    assert read["status"] in ("ignored", "joined")  # a read is never a finding; the agent is held anyway
