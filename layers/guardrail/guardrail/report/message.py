"""The incident message: one versioned JSON document, an email body and a subject for people.

Pure: built from what the responder knows, no AWS. Everything taken from the event is
attacker-controlled; here it is only data (JSON) or plain text (email). Slack rendering, where text
becomes markup, escapes it (see slack.py).

Schema (``schema: guardrail-responder/incident``, ``version: 1``) is documented in docs/notifications.md.
Fields are only ever added within a version; a change in meaning gets a new version.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from guardrail.model import PrincipalKind

if TYPE_CHECKING:
    from guardrail.detect.catalogue import Rule
    from guardrail.detect.verdict import Verdict
    from guardrail.incident import Incident

SCHEMA = "guardrail-responder/incident"
VERSION = 1
SUBJECT_LIMIT = 99  # SNS refuses subjects of 100 characters or more
# Values copied from the event are attacker-chosen: each is clipped so that the message (three copies of it
# travel in one publish: default, email, email-json) always fits SNS's 256 KB.
FIELD_LIMIT = 2048
# What the responder and the release function need of the topic, and of the key that encrypts it.
PUBLISH_PERMISSIONS = ("sns:Publish", "kms:GenerateDataKey", "kms:Decrypt")

# The agent or tool behind a call, from its userAgent: agents before the SDKs and CLIs they drive.
_USER_AGENTS: tuple[tuple[str, str], ...] = (
    (r"claude[-_ ]?code", "Claude Code"),
    (r"copilot", "GitHub Copilot"),
    (r"cursor", "Cursor"),
    (r"devin", "Devin"),
    (r"codex", "OpenAI Codex"),
    (r"aider", "Aider"),
    (r"windsurf|codeium", "Windsurf"),
    (r"amazon ?q|q-developer|codewhisperer", "Amazon Q Developer"),
    (r"terraform", "Terraform"),
    (r"pulumi", "Pulumi"),
    (r"aws-cdk|cdk/", "AWS CDK"),
    (r"aws-cli/", "AWS CLI"),
    (r"boto3/", "boto3"),
    (r"botocore/", "botocore"),
    (r"aws-sdk-js|aws-sdk-nodejs", "AWS SDK for JavaScript"),
    (r"aws-sdk-go", "AWS SDK for Go"),
    (r"aws-sdk-java", "AWS SDK for Java"),
    (r"cloudformation\.amazonaws\.com", "CloudFormation"),
    (r"console\.amazonaws\.com|signin\.amazonaws\.com", "AWS console"),
)
_AGENT_NAMES = frozenset(
    {
        "Claude Code",
        "GitHub Copilot",
        "Cursor",
        "Devin",
        "OpenAI Codex",
        "Aider",
        "Windsurf",
        "Amazon Q Developer",
    }
)
_COMPILED = tuple((re.compile(p, re.IGNORECASE), name) for p, name in _USER_AGENTS)

# Request parameters that name what a call acts on, most specific first.
_TARGET_KEYS = (
    "bucketName", "dBInstanceIdentifier", "dBClusterIdentifier", "dBSnapshotIdentifier", "tableName",
    "functionName", "stackName", "keyId", "backupVaultName", "recoveryPointArn", "fileSystemId", "secretId",
    "topicArn", "queueUrl", "clusterIdentifier", "replicationGroupId", "cacheClusterId", "repositoryName",
    "hostedZoneId", "detectorId", "trailName", "configurationRecorderName", "roleName", "userName",
    "groupName", "policyArn", "policyId", "volumeId", "snapshotId", "imageId", "vpcId", "instanceId",
    "resourceArn", "resourceName", "backupPlanId", "service", "cluster", "rule", "name", "id", "key",
)  # fmt: skip


def _clipped(value: str | None) -> str | None:
    if value is None or len(value) <= FIELD_LIMIT:
        return value
    return value[: FIELD_LIMIT - 14] + "… (truncated)"


def agent_tool(user_agent: str | None) -> str | None:
    """ "Claude Code (via AWS CLI)", "boto3", or None when nothing is recognised."""
    if not user_agent:
        return None
    found = [name for pattern, name in _COMPILED if pattern.search(user_agent)]
    if not found:
        return None
    agents = [n for n in found if n in _AGENT_NAMES]
    tools = [n for n in found if n not in _AGENT_NAMES]
    if agents and tools:
        return f"{agents[0]} (via {tools[0]})"
    return (agents or tools)[0]


def target_resource(request: dict[str, object]) -> str | None:
    """What the call acted on, as the request names it."""
    items = request.get("instancesSet")
    if isinstance(items, dict) and isinstance(items.get("items"), list):
        ids = [
            str(i.get("instanceId")) for i in items["items"] if isinstance(i, dict) and i.get("instanceId")
        ]
        if ids:
            return ", ".join(ids)
    for key in _TARGET_KEYS:
        value = request.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def console_links(verdict: Verdict, runbook_url: str | None) -> dict[str, str]:
    call = verdict.call
    region = call.region
    links = {
        "cloudtrail": f"https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}"
        f"#/events/{quote(call.event_id, safe='')}",
    }
    principal = call.principal
    if principal.kind in (PrincipalKind.ROLE, PrincipalKind.IDENTITY_CENTER) and principal.name:
        links["iam"] = (
            f"https://console.aws.amazon.com/iam/home#/roles/details/{quote(principal.name, safe='')}"
        )
    elif principal.kind in (PrincipalKind.USER, PrincipalKind.FEDERATED) and principal.name:
        links["iam"] = (
            f"https://console.aws.amazon.com/iam/home#/users/details/{quote(principal.name, safe='')}"
        )
    if runbook_url:
        links["runbook"] = runbook_url
    return links


def release_command(incident: Incident | None) -> str | None:
    if incident is None or not incident.key.startswith("arn:aws:iam::") or ":root" in incident.key:
        return None
    return f'guardrail release --principal {incident.key} --reason "<what you found and fixed>"'


def _rule_doc(rule: Rule) -> dict[str, str]:
    return {"id": rule.id, "title": rule.title, "why": rule.why, "attack": rule.attack, "fix": rule.fix}


def _containment_doc(incident: Incident, **changes: Any) -> dict[str, Any]:
    document = {
        "status": incident.status.value,
        "reason": incident.reason,  # whom the containment stopped, where it is not the role or user itself
        "actions": incident.actions,
        "containment_ms": incident.containment_ms,
        "manual_steps": incident.manual_steps,
        "caveats": incident.caveats,
        "error": incident.error,
        "opened_at": incident.to_dict()["opened_at"],
        "released_by": incident.released_by,
        "release_reason": incident.release_reason,
    }
    return {**document, **changes}


def people_doc(incident: Incident | None) -> dict[str, Any]:
    """What people did about the incident from Slack (respond/people.py), for the renderers."""
    if incident is None:
        return {}
    found = {
        "acknowledged": incident.acknowledged,
        "release_request": incident.release_request,
        "contained_by": incident.contained_by,
        "followed_by": incident.followed_by,
    }
    return {k: v for k, v in found.items() if v}


def incident_message(
    verdict: Verdict,
    status: str,
    incident: Incident | None = None,
    *,
    kind: str = "incident",
    runbook_url: str | None = None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The message every subscriber gets (as JSON) and every renderer starts from.

    kind: incident (the first of an incident, or a single report), update (later events of an open
    incident, summarised), restored (a containment found changed and put back), release, damage (the
    damage report that follows a containment, report/damage.py).
    """
    call, principal = verdict.call, verdict.call.principal
    message: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "kind": kind,
        "incident_id": incident.id if incident else None,
        "status": status,
        "decision": verdict.decision.value,
        "severity": verdict.severity.value,
        "category": verdict.category.value,
        "environment": verdict.environment.value,
        "account": call.account,
        "region": call.region,
        "reason": _clipped(verdict.reason),
        "principal": {
            "arn": _clipped(principal.arn),
            "kind": principal.kind.value,
            # An Identity Center session is a person's: name the user, not the permission set's role.
            "name": _clipped(
                principal.session_name
                if principal.kind is PrincipalKind.IDENTITY_CENTER and principal.session_name
                else principal.name
            ),
            "session": _clipped(principal.session_name),
            "is_agent": verdict.is_agent,
            "is_protected": verdict.is_protected,
        },
        "event": {
            "id": call.event_id,
            "time": call.event_time.isoformat().replace("+00:00", "Z"),
            "source": call.event_source,
            "name": call.event_name,
            "error_code": _clipped(call.error_code),
            "request_id": _clipped(call.request_id),
            "source_ip": _clipped(call.source_ip),
            "user_agent": _clipped(call.user_agent),
            "agent_tool": agent_tool(call.user_agent),
            "target": _clipped(target_resource(call.request)),
        },
        "rules": [_rule_doc(r) for r in verdict.rules],
        "thresholds": [h.to_dict() for h in verdict.thresholds],
        "containment": _containment_doc(incident) if incident is not None else None,
        "counts": {"events": incident.event_count if incident else 1},
        "links": console_links(verdict, runbook_url),
        "release_command": release_command(incident) if incident and status == "contained" else None,
        "people": people_doc(incident),
    }
    if summary is not None:
        message["counts"].update(summary)
    return message


def _event_doc(event_id: str, time: str, source: str, name: str) -> dict[str, Any]:
    """The event part of a message not built from the event itself: what is known of it, and no more."""
    unknown = ("error_code", "request_id", "source_ip", "user_agent", "agent_tool", "target")
    return {"id": event_id, "time": time, "source": source, "name": name, **dict.fromkeys(unknown)}


def record_message(incident: Incident, runbook_url: str | None, **fields: Any) -> dict[str, Any]:
    """A message about an incident built from its record alone (the triggering event is long gone): a
    release, or a containment put back by the scheduled check."""
    from guardrail.detect.catalogue import default_catalogue

    verdict = incident.verdict
    catalogue = default_catalogue()
    rules = []
    for rule_id in verdict.get("rule_ids") or []:
        try:
            rule = catalogue.by_id(rule_id)
        except KeyError:
            continue
        rules.append(_rule_doc(rule))
    name = incident.key.rsplit("/", 1)[-1] if "/" in incident.key else incident.key
    message = {
        "schema": SCHEMA,
        "version": VERSION,
        "kind": "release",
        "incident_id": incident.id,
        "status": incident.status.value,
        "decision": verdict.get("decision", "contain"),
        "severity": verdict.get("severity", "info"),
        "category": verdict.get("category", "benign"),
        "environment": verdict.get("environment", "production"),
        "account": incident.account,
        "region": incident.region,
        "reason": "",
        "principal": {
            "arn": incident.principal_arn,
            "kind": "role" if ":role/" in incident.key else "user",
            "name": name,
            "session": None,
            "is_agent": True,
            "is_protected": False,
        },
        "event": _event_doc(
            verdict.get("event_id", ""),
            verdict.get("event_time", ""),
            verdict.get("event_source", ""),
            verdict.get("event_name", ""),
        ),
        "rules": rules,
        "thresholds": list(verdict.get("thresholds") or []),
        "containment": _containment_doc(incident),
        "counts": {"events": incident.event_count},
        "links": {"runbook": runbook_url} if runbook_url else {},
        "release_command": None,
        "people": people_doc(incident),
    }
    message.update(fields)
    return message


def release_message(incident: Incident, runbook_url: str | None = None) -> dict[str, Any]:
    """The release announcement."""
    return record_message(
        incident,
        runbook_url,
        kind="release",
        status="released",
        reason=f"released by {incident.released_by}: {incident.release_reason}",
        containment=_containment_doc(
            incident,
            status="released",
            actions=incident.release_actions,
            manual_steps=[],
            caveats=[],
            error=None,
        ),
    )


def restored_message(incident: Incident, summary: str, runbook_url: str | None = None) -> dict[str, Any]:
    """A containment the scheduled check found changed, and put back: always critical."""
    return record_message(
        incident,
        runbook_url,
        kind="restored",
        severity="critical",
        reason=summary,
        counts={"events": incident.event_count, "summary": summary},
        release_command=release_command(incident),
    )


def drift_message(
    problems: list[str], account: str, region: str, runbook_url: str | None = None
) -> dict[str, Any]:
    """The responder itself is not as deployed (a rule disabled or rewritten, a target gone, the trail not
    logging management events, an alarm missing): it may be blind. Always critical."""
    reason = "; ".join(problems)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "kind": "drift",
        "incident_id": None,
        "status": "drift",
        "decision": "notify",
        "severity": "critical",
        "category": "guardrail_tampering",
        "environment": "production",
        "account": account,
        "region": region,
        "reason": _clipped(reason),
        "principal": {
            "arn": "",
            "kind": "unknown",
            "name": "the responder",
            "session": None,
            "is_agent": False,
            "is_protected": False,
        },
        "event": _event_doc("", "", "guardrail", "ScheduledCheck"),
        "rules": [
            {
                "id": "guardrail.drift",
                "title": "The responder is not as deployed",
                "why": "A disabled or rewritten rule, a missing target, a trail that stopped logging management "
                "events or a missing alarm can leave the responder blind without a word.",
                "attack": "T1562.001",
                "fix": "Redeploy the stack (sam deploy), start the trail, and find who changed it in CloudTrail.",
            }
        ],
        "thresholds": [],
        "containment": None,
        "counts": {"events": len(problems), "summary": reason},
        "links": {"runbook": runbook_url} if runbook_url else {},
        "release_command": None,
    }


OUTCOME_LABELS = {
    "drift": "RESPONDER DRIFT",
    "contained": "CONTAINED",
    "dry_run": "DRY RUN: WOULD CONTAIN",
    "not_containable": "NOT CONTAINABLE",
    "failed": "CONTAINMENT FAILED",
    "refused": "NOT CONTAINED",
    "released": "RELEASED",
    "reported": "REPORTED",
}


def outcome_label(message: dict[str, Any]) -> str:
    return OUTCOME_LABELS.get(str(message["status"]), str(message["status"]).upper())


def _one_line(text: object, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def subject(message: dict[str, Any]) -> str:
    """[CRITICAL][CONTAINED] AIAgentRole: StopLogging, always under 100 characters."""
    who = message["principal"]["name"] or message["principal"]["arn"] or message["principal"]["kind"]
    prefix = f"[{message['severity'].upper()}][{outcome_label(message)}]"
    if message["kind"] in ("update", "restored", "damage", "widened"):
        prefix += f"[{message['kind'].upper()}]"
    text = f"{prefix} {who}: {message['event']['name']}"
    return _one_line(text, SUBJECT_LIMIT)


def attributes(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    """SNS message attributes, for subscription filter policies (page only on critical in production)."""
    values = {
        "severity": message["severity"],
        "category": message["category"],
        "decision": message["decision"],
        "status": message["status"],
        "kind": message["kind"],
        "environment": message["environment"],
        "account": message["account"],
    }
    return {k: {"DataType": "String", "StringValue": str(v)} for k, v in values.items() if v}


def email_text(message: dict[str, Any]) -> str:
    """Plain text for the on-call engineer reading email at 3 a.m.: what, who, where, what was done."""
    event, principal = message["event"], message["principal"]
    containment = message.get("containment") or {}
    lines = [subject(message), ""]
    if message["kind"] == "update":
        counts = message["counts"]
        lines += [f"More activity joined incident {message['incident_id']}: {counts.get('summary', '')}", ""]
    if message["kind"] == "restored":
        summary = message["counts"].get("summary", "")
        lines += [f"CONTAINMENT CHANGED, incident {message['incident_id']}: {summary}", ""]
    if message["kind"] == "widened":
        lines += [
            f"CONTAINMENT WIDENED, incident {message['incident_id']}: {message['counts'].get('summary', '')}",
            "",
        ]
    if message["kind"] == "damage":
        damage = message.get("damage") or {}
        lines += [str(damage.get("text", "")).rstrip(), ""]
        lines += [f"PUT BACK BY THE RESPONDER: {what}" for what in damage.get("restored") or []]
    lines += [
        "WHAT HAPPENED",
        f"  {event['name']} ({event['source']}) on {event['target'] or 'an unnamed resource'}",
        f"  at {event['time']}" + (f", failed with {event['error_code']}" if event["error_code"] else ""),
        f"  {message['reason']}",
        "",
        "WHO",
        f"  {principal['arn'] or principal['kind']}",
        f"  agent/tool: {event['agent_tool'] or 'not recognised'}; source IP: {event['source_ip'] or 'unknown'}",
        f"  user agent: {_one_line(event['user_agent'] or '-', 300)}",
        "",
        "WHERE",
        f"  account {message['account']} ({message['environment']}), region {message['region']}",
        "",
        "WHAT WAS DONE",
        f"  {outcome_label(message)}"
        + (f" (incident {message['incident_id']})" if message["incident_id"] else ""),
    ]
    if containment.get("reason") and containment["reason"] != message["reason"]:
        lines.append(f"  {containment['reason']}")
    for action in containment.get("actions") or []:
        details = action.get("details") or {}
        what = (
            details.get("policy_name")
            or ", ".join(details.get("deactivated") or [])
            or details.get("userid")
            or ""
        )
        if details.get("identity_store_user_id"):
            what += f" (identity store user {details['identity_store_user_id']})"
        lines.append(
            f"  - {action['action']} {what}".rstrip()
            + (f" FAILED: {action['error']}" if action.get("error") else "")
        )
    if containment.get("containment_ms") is not None:
        lines.append(f"  IAM write {containment['containment_ms']} ms after the event reached the responder")
    if containment.get("error"):
        lines.append(f"  ERROR: {containment['error']}")
    for step in containment.get("manual_steps") or []:
        lines.append(f"  TO DO: {step}")
    for caveat in containment.get("caveats") or []:
        lines.append(f"  NOTE: {caveat}")
    if message["status"] == "released":
        lines.append(f"  released by {containment.get('released_by')}: {containment.get('release_reason')}")
    if message.get("thresholds"):
        lines += ["", "THRESHOLDS REACHED"]
        lines += [
            f"  {t['name']}: {t['count']} {t['what']} in {t['minutes']} min "
            f"(threshold {t['at']}, {t['decision']})"
            for t in message["thresholds"]
        ]
    if message["rules"]:
        lines += ["", "WHY IT MATTERS"]
        for rule in message["rules"]:
            lines += [
                f"  {rule['title']} [{rule['id']}, MITRE ATT&CK {rule['attack']}]",
                f"  {rule['why']}",
                f"  Fix: {rule['fix']}",
            ]
    lines += ["", "LINKS"]
    lines += [f"  {name}: {url}" for name, url in message["links"].items()]
    if message.get("release_command"):
        lines += ["", "RELEASE (after investigation)", f"  {message['release_command']}"]
    lines += ["", f"Event {event['id']}; request {event['request_id'] or '-'}."]
    return "\n".join(lines) + "\n"


def sns_payload(message: dict[str, Any]) -> dict[str, str]:
    """Publish arguments: readable text for email, the JSON document for every other protocol."""
    document = json.dumps(message, separators=(",", ":"), default=str)
    return {
        "Subject": subject(message),
        "MessageStructure": "json",
        "Message": json.dumps({"default": document, "email": email_text(message), "email-json": document}),
    }
