"""EventBridge as the tests' oracle of routing: moto's rules, matched for real (put_events, an SQS target).

moto does not implement test_event_pattern; a rule with a queue target is what it does implement."""

from __future__ import annotations

import json
from typing import Any

import boto3


def router(patterns: dict[str, dict[str, Any]]) -> Any:
    """Route events through moto's EventBridge with these patterns; returns a function event -> routed?"""
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"routed-{len(patterns)}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for name, pattern in patterns.items():
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": queue_arn}])

    def routed(event: dict[str, Any]) -> bool:
        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in received:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return any(json.loads(m["Body"])["detail"] == event["detail"] for m in received)

    return routed


def envelope(record: dict[str, Any], number: int) -> dict[str, Any]:
    """A bare record as EventBridge would deliver it."""
    if "detail" in record:
        return record
    detail_type = {
        "awsconsolesignin": "AWS Console Sign In via CloudTrail",
        "awsserviceevent": "AWS Service Event via CloudTrail",
        "awsconsoleaction": "AWS Console Action via CloudTrail",
    }.get(str(record.get("eventType", "")).lower(), "AWS API Call via CloudTrail")
    return {
        "version": "0",
        "id": f"real-{number}",
        "detail-type": detail_type,
        "source": "aws." + str(record.get("eventSource", "x")).split(".")[0],
        "account": "111122223333",
        "time": "2026-11-20T03:12:43Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }
