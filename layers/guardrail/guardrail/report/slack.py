"""Slack rendering of an incident message: Block Kit an on-call engineer can act on at 3 a.m.

Everything that comes from the event is attacker-controlled (a bucket name, a session name, a userAgent
can all be chosen by the agent): it is escaped for mrkdwn, so `<!channel>`, `<@U123>` or
`<https://evil|innocent>` show as text and notify nobody, and it is clipped to Block Kit's limits
(header 150 characters, section text 3,000, field 2,000, 50 blocks) with a visible marker, never an error.
"""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from guardrail.incident import RELEASABLE_STATUSES
from guardrail.report.message import outcome_label, subject

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
BLOCK_LIMIT = 50
TRUNCATED = "… (truncated)"

_ICONS = {"critical": ":rotating_light:", "high": ":red_circle:", "medium": ":large_orange_circle:",
          "low": ":large_yellow_circle:", "info": ":white_circle:"}  # fmt: skip


# The people's buttons (bot mode with Slack actions on): action ids the interactivity endpoint knows.
ACKNOWLEDGE = "guardrail_acknowledge"
RELEASE = "guardrail_release"  # opens the reason modal
APPROVE_RELEASE = "guardrail_approve_release"  # two-person release: the second person
CONTAIN_NOW = "guardrail_contain_now"
RELEASE_VIEW = "guardrail_release_reason"  # the modal's callback id
REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
REASON_LIMIT = 1000  # characters of a release reason (the CLI takes any; Slack's input holds 3,000)
# Slack's own ids (signed by Slack, never from the event): safe to show as a mention.
SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_RELEASABLE = RELEASABLE_STATUSES  # StrEnum members: the message's status strings compare equal


def escape(text: object) -> str:
    """mrkdwn control characters as entities: Slack shows them, and parses no mention or link from them."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _code(text: object, limit: int = 300) -> str:
    # Backticks inside would close the span early: show them as a look-alike, the value stays readable.
    return "`" + escape(clip(str(text).replace("`", "\u02cb"), limit)) + "`"


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_LIMIT)))


def _fields(pairs: list[tuple[str, str]]) -> SectionBlock:
    return SectionBlock(
        fields=[MarkdownTextObject(text=clip(f"*{k}*\n{v}", FIELD_LIMIT)) for k, v in pairs[:10]]
    )


def _containment_text(message: dict[str, Any]) -> str:
    status = message["status"]
    containment = message.get("containment") or {}
    if status == "contained":
        took = containment.get("containment_ms")
        done = ", ".join(a["action"] for a in containment.get("actions") or [])
        text = f":lock: *Contained*: {escape(done)}" + (
            f" ({took} ms after the event arrived)" if took else ""
        )
    elif status == "dry_run":
        text = ":test_tube: *Dry run: would contain* (nothing was changed; `GUARDRAIL_DRY_RUN=true`)"
    elif status == "not_containable":
        steps = "\n".join(f"• {escape(s)}" for s in containment.get("manual_steps") or [])
        text = f":warning: *Not containable here*: {escape(message['reason'])}\n*Do this by hand:*\n{steps}"
    elif status == "failed":
        text = f":x: *CONTAINMENT FAILED: the agent may still be active.* {escape(containment.get('error') or '')}"
    elif status == "refused":
        text = f":no_entry: *Not contained*: {escape(message['reason'])}"
    elif status == "released":
        text = (
            f":unlock: *Released* by {escape(containment.get('released_by') or '?')}: "
            f"{escape(containment.get('release_reason') or '')}"
        )
    else:
        text = ":mag: *Reported*, not contained: " + escape(message["reason"])
    for caveat in containment.get("caveats") or []:
        text += f"\n_{escape(caveat)}_"
    return text


_DAMAGE_ICONS = {
    "undo": ":leftwards_arrow_with_hook:",
    "by_hand": ":wrench:",
    "lost": ":x:",
    "unknown": ":grey_question:",
    "failed": ":white_circle:",
}
DAMAGE_LINES = 12  # changes shown in Slack; the rest are counted (guardrail investigate lists them)


def _damage_blocks(message: dict[str, Any]) -> list[Block]:
    """The damage report: one line per change, what can be done and until when, grouped by resource."""
    damage = message.get("damage") or {}
    counts = damage.get("counts") or {}
    blocks: list[Block] = [
        _section(
            f"*What the agent changed* (incident `{escape(message['incident_id'] or '')}`): "
            f"{counts.get('undo', 0)} can be undone, {counts.get('by_hand', 0)} by hand, "
            f"*{counts.get('lost', 0)} cannot be undone*, {counts.get('unknown', 0)} unknown"
        )
    ]
    shown = 0
    for group in damage.get("resources") or []:
        rows = []
        for change in group.get("changes") or []:
            shown += 1
            if shown > DAMAGE_LINES:
                break
            recovery = change.get("recovery") or {}
            row = f"{_DAMAGE_ICONS.get(change['status'], '')} {change['time'][11:19]} {_code(change['name'], 80)}"
            if change["status"] == "failed":
                row += f" failed ({escape(change.get('error_code') or '')})"
            elif recovery:
                row += f": {escape(clip(recovery.get('how') or '', 300))}"
                if recovery.get("deadline") and change["status"] in ("undo", "by_hand"):
                    row += f" *Before {escape(recovery['deadline'])}*"
            else:
                row += ": no recovery known, check by hand"
            rows.append(row)
        if rows:
            blocks.append(_section(f"{_code(group['resource'], 200)}\n" + "\n".join(rows)))
    total = sum(len(g.get("changes") or []) for g in damage.get("resources") or [])
    if total > DAMAGE_LINES:
        blocks.append(
            _section(
                f"... and {total - DAMAGE_LINES} more: `guardrail investigate {escape(message['incident_id'] or '')}`"
            )
        )
    restored = damage.get("restored") or []
    if restored:
        blocks.append(_section("*Put back by the responder:* " + escape("; ".join(restored))))
    if counts.get("undo"):
        blocks.append(
            _section(f"*Undo:* ```guardrail undo {escape(message['incident_id'] or '')} --apply```")
        )
    return blocks[:20]


def render(message: dict[str, Any], *, actions: bool = False) -> dict[str, Any]:
    """The chat.postMessage / webhook payload: fallback text and blocks. `actions`: the people's buttons
    (bot mode with the interactivity endpoint deployed; a webhook's message cannot carry them)."""
    event, principal = message["event"], message["principal"]
    who = principal["name"] or principal["arn"] or principal["kind"]
    icon = _ICONS.get(message["severity"], "")
    label = outcome_label(message)
    header = f"{icon} {message['severity'].upper()} | {label} | {who}"
    if message["kind"] in ("update", "restored", "damage", "widened"):
        header = f"{icon} {message['kind'].upper()} | {label} | {who}"
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=clip(header, HEADER_LIMIT), emoji=True))]

    if message["kind"] == "widened":
        blocks.append(
            _section(
                f":rotating_light: *{escape(message['counts'].get('summary') or 'containment widened')}*"
            )
        )
    if message["kind"] == "restored":
        changed = message["counts"].get("summary") or "the containment was changed"
        blocks.append(
            _section(
                f":warning: *Containment changed*: {escape(changed)} (incident `{escape(message['incident_id'])}`)"
            )
        )
    if message["kind"] == "damage":
        blocks += _damage_blocks(message)
    elif message["kind"] == "update":
        summary = message["counts"].get("summary") or f"{message['counts'].get('events')} events so far"
        blocks.append(_section(f"{escape(summary)} (incident `{escape(message['incident_id'])}`)"))
    else:
        top = message["rules"][0]["title"] if message["rules"] else "No rule matched"
        target = f" on {_code(event['target'])}" if event["target"] else ""
        blocks.append(
            _section(
                f"*{escape(top)}*: {_code(event['name'], 120)}{target}\n{escape(clip(message['reason'], 1500))}"
            )
        )
        session = f" (session {_code(principal['session'], 120)})" if principal["session"] else ""
        blocks.append(
            _fields(
                [
                    ("Who", f"{_code(principal['arn'] or principal['kind'], 400)}{session}"),
                    ("Agent / tool", escape(event["agent_tool"] or "not recognised")),
                    ("What", f"{_code(event['name'], 120)} on {_code(event['source'], 120)}"),
                    (
                        "Where",
                        f"{_code(message['account'], 20)} ({escape(message['environment'])}), {_code(message['region'], 40)}",
                    ),
                    ("When", escape(event["time"])),
                    ("Source IP", _code(event["source_ip"] or "unknown", 100)),
                ]
            )
        )
    if message["kind"] not in ("update", "damage") and message.get("thresholds"):
        reached = "\n".join(
            f"• {escape(t['name'])}: *{t['count']}* {escape(t['what'])} in {t['minutes']} min "
            f"(threshold {t['at']})"
            for t in message["thresholds"]
        )
        blocks.append(_section(f"*Thresholds reached*\n{reached}"))
    if message["kind"] != "damage":
        blocks.append(_section(_containment_text(message)))
    if message["kind"] not in ("update", "damage") and message["rules"]:
        rule = message["rules"][0]
        blocks.append(
            _section(
                f"*Why it matters* ({escape(rule['attack'])}): {escape(rule['why'])}\n*Fix:* {escape(rule['fix'])}"
            )
        )
    if message["kind"] not in ("update", "damage"):  # the post says it; its thread replies need not repeat it
        blocks += _people_blocks(message)
    if message.get("release_command"):
        blocks.append(_section(f"*Release after investigation:*\n```{escape(message['release_command'])}```"))
    buttons = [
        ButtonElement(text=PlainTextObject(text=text), url=url, action_id=f"open_{name}")
        for name, text in (
            ("cloudtrail", "CloudTrail event"),
            ("iam", "IAM principal"),
            ("runbook", "Runbook"),
        )
        if (url := message["links"].get(name))
    ]
    if actions and message["kind"] not in ("update", "damage"):
        buttons = _action_buttons(message) + buttons
    if buttons:
        blocks.append(ActionsBlock(elements=buttons[:25]))
    context = [f"incident `{escape(message['incident_id'])}`"] if message["incident_id"] else []
    context += [
        f"event `{escape(event['id'])}`",
        f"rules: {escape(', '.join(r['id'] for r in message['rules']) or 'none')}",
    ]
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(" · ".join(context), SECTION_LIMIT))]))
    blocks.insert(len(blocks) - 1, DividerBlock())
    return {"text": escape(subject(message)), "blocks": [b.to_dict() for b in blocks[:BLOCK_LIMIT]]}


def mention(person: dict[str, Any]) -> str:
    """A person who acted, as Slack shows them: a mention when the id is Slack's, else the name as text."""
    user = str(person.get("user_id") or "")
    return f"<@{user}>" if SLACK_ID.match(user) else "@" + escape(person.get("name") or "someone")


def _when(person: dict[str, Any]) -> str:
    at = str(person.get("at") or "")
    return f" at {escape(at[11:16])} UTC" if len(at) >= 16 else ""


def _people_blocks(message: dict[str, Any]) -> list[Block]:
    """What people did from Slack: taken, release asked for, contained by hand."""
    people = message.get("people") or {}
    lines = []
    if people.get("contained_by"):
        lines.append(
            f":raised_hand: Contained by {mention(people['contained_by'])}{_when(people['contained_by'])}"
        )
    if people.get("followed_by"):
        lines.append(f":lock: Contained from Slack: incident `{escape(people['followed_by'])}`")
    if people.get("acknowledged"):
        lines.append(
            f":eyes: Acknowledged by {mention(people['acknowledged'])}{_when(people['acknowledged'])}"
        )
    request = people.get("release_request")
    if request and message["status"] in _RELEASABLE:
        lines.append(
            f":hourglass: Release requested by {mention(request)}{_when(request)}: "
            f"{escape(clip(str(request.get('reason') or ''), 500))}\n_Needs a second person to approve._"
        )
    return [_section("\n".join(lines))] if lines else []


def _action_buttons(message: dict[str, Any]) -> list[ButtonElement]:
    """The buttons an incident's state allows; every click is checked again by the endpoint and the worker
    (a stale message may still show a button)."""
    incident_id = message.get("incident_id")
    if not incident_id or message["kind"] == "release":
        return []
    people, status = message.get("people") or {}, message["status"]
    buttons = []
    if status not in ("released", "refused") and not people.get("acknowledged"):
        buttons.append(_button("Acknowledge", ACKNOWLEDGE, incident_id))
    if status in _RELEASABLE and people.get("release_request"):
        buttons.append(_button("Approve release", APPROVE_RELEASE, incident_id, style="danger"))
    elif status in _RELEASABLE:
        buttons.append(_button("Release...", RELEASE, incident_id))
    agent = (message.get("principal") or {}).get("is_agent")
    if status == "reported" and agent and not people.get("followed_by"):
        confirm = ConfirmObject(
            title="Contain this agent?",
            text=f"Deny {clip(str(message['principal'].get('name') or 'the agent'), 100)} everything, as the "
            "responder would. Release it afterwards with Release... on the containment's message.",
            confirm="Contain now",
            deny="Cancel",
        )
        buttons.append(_button("Contain now", CONTAIN_NOW, incident_id, style="danger", confirm=confirm))
    return buttons


def _button(
    text: str, action_id: str, value: str, *, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text), action_id=action_id, value=value, style=style, confirm=confirm
    )


def release_modal(incident_id: str) -> dict[str, Any]:
    """The modal Release... opens: the reason is required, as `guardrail release --reason` requires it."""
    view = View(
        type="modal",
        callback_id=RELEASE_VIEW,
        private_metadata=incident_id,
        title=PlainTextObject(text="Release the agent"),
        submit=PlainTextObject(text="Release"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            _section(
                f"Remove exactly what the containment of incident `{escape(incident_id)}` added, as "
                "`guardrail release` does. Its windows start afresh; everything is audited."
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text="Why is it safe for it to act again?"),
                element=PlainTextInputElement(
                    action_id=REASON_INPUT, multiline=True, min_length=1, max_length=REASON_LIMIT
                ),
            ),
        ],
    )
    return view.to_dict()
