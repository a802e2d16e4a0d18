"""Checks that what the responder relies on is still true: every containment in place, and the responder
itself as deployed.

A contained principal's containment is checked on its later events and when a call changes it (act.py);
the scheduled check (functions/checker, every few minutes) checks every open containment even when no event
comes, and the responder's own routing, trail and alarms, which no event of theirs may reach it about
once they are changed. What it finds is put back (containments) or announced as critical (drift).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.errors import ConfigurationError
from guardrail.incident import IncidentStatus
from guardrail.respond.containment import ActionRecord, IncidentRef, Target, restore
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from guardrail.aws import AwsClients
    from guardrail.incident import Incident
    from guardrail.respond.runtime import Runtime
    from guardrail.settings import Settings

# What the scheduled check reads, beyond what containment itself needs (containment_permissions()).
CHECK_PERMISSIONS = (
    "dynamodb:Scan",  # the open incidents and the principal locks
    "dynamodb:DeleteItem",  # a lock no incident of the responder's stands behind
    "events:ListRules",
    "events:ListTargetsByRule",
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:GetEventSelectors",
    "cloudwatch:DescribeAlarms",
)
_ENABLED = ("ENABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")


@dataclass(frozen=True)
class Restored:
    """A containment found changed: what had changed, and what was applied again (failures included)."""

    changed: list[str]
    redone: list[ActionRecord]

    @property
    def failed(self) -> list[str]:
        return [f"{r.action}: {r.error}" for r in self.redone if r.error]

    def summary(self, changed_by: str | None) -> str:
        text = "; ".join(self.changed) + (f" by {changed_by}" if changed_by else "")
        return text + (f"; could not put back: {'; '.join(self.failed)}" if self.failed else ": put back")


def restore_containment(incident: Incident, rt: Runtime, changed_by: str | None) -> Restored | None:
    """Check that what the incident applied is still exactly in place; apply again whatever is not, record
    it (its actions, an audit record naming who changed it, the request ids CloudTrail will echo) and log
    and count it. None when nothing changed, or the incident is not a containment this responder reaches.
    Reading IAM may raise: the caller decides whether that fails its invocation."""
    if incident.status is not IncidentStatus.CONTAINED:
        return None
    iam = rt.iam_for(Target.from_arn(incident.key).account)
    if iam is None:
        return None
    records = [ActionRecord.from_item(a) for a in incident.actions]
    changed, redone = restore(records, IncidentRef(incident.id, incident.opened_at), iam)
    if not changed:
        return None
    found = Restored(changed, redone)
    rt.store.amended(incident, changed, [r.to_item() for r in redone], changed_by)
    metrics.add_metric(name="ContainmentRestored", unit=MetricUnit.Count, value=1)
    logger.error(
        "CONTAINMENT CHANGED and could not be put back" if found.failed else "CONTAINMENT CHANGED: put back",
        extra={
            "incident_id": incident.id,
            "changed": changed,
            "changed_by": changed_by,
            "failed": found.failed,
        },
    )
    return found


@dataclass(frozen=True)
class Deployment:
    """What the responder should look like, from the template (the checker's environment)."""

    responder_arn: str
    alarm_names: tuple[str, ...]
    region: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Deployment:
        env = os.environ if environ is None else environ
        arn = env.get("GUARDRAIL_RESPONDER_FUNCTION_ARN", "").strip()
        if not arn.startswith("arn:"):
            raise ConfigurationError(
                "GUARDRAIL_RESPONDER_FUNCTION_ARN: the responder function's ARN is required"
            )
        alarms = tuple(a.strip() for a in env.get("GUARDRAIL_ALARM_NAMES", "").split(",") if a.strip())
        return cls(arn, alarms, env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "")


@dataclass
class CheckReport:
    containments: int = 0
    restored: list[dict[str, Any]] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "containments_checked": self.containments,
            "restored": self.restored,
            "drift": self.drift,
            "errors": self.errors,
        }


def check_all(rt: Runtime, deployment: Deployment) -> CheckReport:
    """The scheduled check. Each part runs whatever another's fate; what could not be checked is an error
    in the report, logged and counted, and the invocation fails after announcing what was found."""
    from guardrail.report.message import drift_message, restored_message

    report = CheckReport()
    for incident in rt.store.records.incidents(limit=10_000):
        if incident.status is not IncidentStatus.CONTAINED:
            continue
        report.containments += 1
        try:
            found = restore_containment(incident, rt, changed_by=None)
        except Exception as exc:
            report.errors.append(f"{incident.id}: could not check its containment: {exc}")
            continue
        if found is not None:
            summary = found.summary(None) + " (found by the scheduled check)"
            report.restored.append({"incident_id": incident.id, "summary": summary})
            rt.publish(restored_message(incident, summary, rt.settings.runbook_url))
    for part in (_forged_locks, _routing_drift, _trail_drift, _alarm_drift):
        try:
            report.drift += part(rt, deployment)
        except Exception as exc:
            report.errors.append(f"{part.__name__.strip('_').replace('_', ' ')}: could not check: {exc}")
    if report.drift:
        metrics.add_metric(name="DriftDetected", unit=MetricUnit.Count, value=len(report.drift))
        logger.error("THE RESPONDER DRIFTED from its deployment", extra={"drift": report.drift})
        account = rt.identity().account
        rt.publish(drift_message(report.drift, account, deployment.region, rt.settings.runbook_url))
    if report.errors:
        metrics.add_metric(name="CheckFailures", unit=MetricUnit.Count, value=len(report.errors))
        logger.error("the scheduled check could not check everything", extra={"errors": report.errors})
    return report


def _forged_locks(rt: Runtime, deployment: Deployment) -> list[str]:
    """Locks no incident of the responder stands behind: written by someone else (the table's policy refuses
    that, but a policy can be changed). A lock is written in one transaction with its incident, so a lock
    whose incident is missing, disagrees on its status, or is a containment that holds no deny, is forged.
    Each is removed, so the next event of its principal is decided afresh."""
    from guardrail.respond.containment import ACTIONS_BY_NAME

    problems = []
    records = rt.store.records
    for lock in records.locks():
        if not records.is_open(lock):
            continue
        key, incident_id = lock["pk"].removeprefix("PRINCIPAL#"), str(lock.get("incident_id") or "")
        incident = records.get(incident_id) if incident_id else None
        why = None
        if incident is None:
            why = f"names incident {incident_id or '(none)'}, which does not exist"
        elif incident.status.value != lock.get("status"):
            why = f"says {lock.get('status')} but incident {incident_id} is {incident.status.value}"
        elif incident.status is IncidentStatus.CONTAINED and not any(
            a.get("error") is None
            and (action := ACTIONS_BY_NAME.get(str(a.get("action")))) is not None
            and action.stops_agent
            for a in incident.actions
        ):
            why = f"says contained, but incident {incident_id} holds no deny"
        if why is not None and records.drop_lock(key, incident_id):
            problems.append(f"a forged lock on {key} {why}: removed")
    return problems


def _routing_drift(rt: Runtime, deployment: Deployment) -> list[str]:
    return routing_drift(rt.aws, rt.settings, deployment)


def deployed_rules(aws: AwsClients, settings: Settings) -> dict[str, dict[str, Any]]:
    """The stack's rules on the default bus, by their pattern (canonical JSON)."""
    events = aws.events
    deployed: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"NamePrefix": settings.own_name_prefix}
    while True:
        page = events.list_rules(**kwargs)
        deployed += page.get("Rules", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return {
        json.dumps(json.loads(r["EventPattern"]), sort_keys=True): r
        for r in deployed
        if r.get("EventPattern")
    }


def agent_writes_routed(deployed: dict[str, dict[str, Any]]) -> bool:
    """Whether the optional AgentWrites rule is among the `deployed` rules (deployed_rules) and enabled
    (template parameter RouteAgentWrites)."""
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.detect.routing import all_patterns

    pattern = all_patterns(default_catalogue())["AgentWrites"]
    rule = deployed.get(json.dumps(pattern, sort_keys=True))
    return rule is not None and rule.get("State") in _ENABLED


def routing_drift(
    aws: AwsClients,
    settings: Settings,
    deployment: Deployment,
    deployed: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Every generated routing rule exists on the default bus with its pattern, is enabled, and targets the
    responder. The optional rules (off by template parameter) are checked only where they exist.
    `deployed`: the rules as deployed_rules listed them, when the caller has them already."""
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.detect.routing import OPTIONAL_RULES, all_patterns

    events = aws.events
    by_pattern = deployed if deployed is not None else deployed_rules(aws, settings)
    problems = []
    for name, pattern in all_patterns(default_catalogue()).items():
        rule = by_pattern.get(json.dumps(pattern, sort_keys=True))
        if rule is None:
            if name not in OPTIONAL_RULES:
                problems.append(f"routing rule {name} is missing, or its pattern was rewritten")
            continue
        if rule.get("State") not in _ENABLED:
            problems.append(
                f"routing rule {name} ({rule['Name']}) is {rule.get('State', 'disabled').lower()}"
            )
        targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        if not any(t.get("Arn") == deployment.responder_arn for t in targets):
            problems.append(f"routing rule {name} ({rule['Name']}) no longer targets the responder")
    return problems


def _trail_drift(rt: Runtime, deployment: Deployment) -> list[str]:
    return trail_drift(rt.aws, deployment)


def trail_drift(aws: AwsClients, deployment: Deployment) -> list[str]:
    """At least one trail logs this region's management events (write events at least)."""
    cloudtrail = aws.cloudtrail
    trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
    for trail in trails:
        if not (trail.get("IsMultiRegionTrail") or trail.get("HomeRegion") == deployment.region):
            continue
        arn = trail["TrailARN"]
        if not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
            continue
        selectors = cloudtrail.get_event_selectors(TrailName=arn)
        if _logs_management_writes(selectors):
            return []
    return [
        f"no trail logs management events in {deployment.region or 'this region'}: the responder sees nothing"
    ]


def _logs_management_writes(selectors: dict[str, Any]) -> bool:
    if not selectors.get("EventSelectors") and not selectors.get("AdvancedEventSelectors"):
        return True  # no selectors of its own: CloudTrail's default, every management event
    for selector in selectors.get("EventSelectors") or []:
        if selector.get("IncludeManagementEvents", True) and selector.get("ReadWriteType", "All") in (
            "All",
            "WriteOnly",
        ):
            return True
    for selector in selectors.get("AdvancedEventSelectors") or []:
        fields = {f["Field"]: f for f in selector.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {}).get("Equals") or []
        read_only = fields.get("readOnly", {}).get("Equals") or []
        if "Management" in category and "true" not in read_only:
            return True
    return False


def _alarm_drift(rt: Runtime, deployment: Deployment) -> list[str]:
    """Every alarm the template creates exists, with its actions enabled."""
    if not deployment.alarm_names:
        return []
    found = rt.aws.cloudwatch.describe_alarms(AlarmNames=list(deployment.alarm_names)).get("MetricAlarms", [])
    by_name = {a["AlarmName"]: a for a in found}
    problems = []
    for name in deployment.alarm_names:
        alarm = by_name.get(name)
        if alarm is None:
            problems.append(f"alarm {name} is missing")
        elif not alarm.get("ActionsEnabled", True):
            problems.append(f"alarm {name} has its actions disabled")
    return problems
