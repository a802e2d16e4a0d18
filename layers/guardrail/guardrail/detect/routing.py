"""EventBridge event patterns generated from the rule catalogue, so routing and classification agree.

Routing must carry every call the classifier would flag (a miss is an agent nobody stops) and as little
else as it can (every routed call is an invocation). So:

- The generic layer (generic.py) flags any call whose name destroys or disables, in any service: the
  ``GenericDestructiveCalls`` rule routes those names by their first word (``{"prefix": "Delete"}``),
  whatever the source. A call that writes permissions and names a role, user, group or grantee is
  routed by that parameter (``PrincipalWrites``), writes only: a human's read-only call is never routed.
- Rules with no condition, or with a condition EventBridge cannot express exactly (``self``: a comparison
  with the caller), are routed by event name, unless the generic route already carries the name.
- Rules whose conditions translate exactly (values, booleans, numbers, ``exists``, case-sensitive
  ``glob`` as ``wildcard``) are routed by those conditions on ``requestParameters``: a routine
  ``PutBucketVersioning`` that enables versioning never invokes the responder. These ``$or`` entries are
  packed into as many rules as the size limit needs.
- Conditions on a path through an array (``tagSet.items[].key``) are routed by name. EventBridge flattens
  arrays of objects when it matches, but moto, our only EventBridge here, does not, so such a pattern
  could not be proven to match; a missed ``PutEventSelectors`` that drops management events costs far
  more than the invocations a name route spends.
- Authorization failures are routed by errorCode (and failed console sign-ins by their outcome), whatever
  the call; so is anything the root user does, console sign-in included.
- Every pattern takes CloudTrail's four detail-types for calls: API calls, console actions, console
  sign-ins and service events.
- Every pattern filters on ``source`` (prefix ``aws.``). EventBridge refuses PutEvents with a source that
  begins with ``aws.``, so only AWS's own events match: an agent allowed ``events:PutEvents`` cannot put a
  forged "AWS API Call via CloudTrail" event in front of the responder.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from guardrail.detect.catalogue import wildcard_pattern
from guardrail.detect.cloudtrail import CLOUDTRAIL_DETAIL_TYPES

if TYPE_CHECKING:
    from guardrail.detect.catalogue import Catalogue, Condition, Rule
    from guardrail.detect.generic import GenericWords

PATTERN_SIZE_LIMIT = 2048
# CloudTrail delivers these services' events to EventBridge in us-east-1 only (console sign-ins through the
# global endpoint too).
GLOBAL_SOURCES = (
    "cloudfront.amazonaws.com",
    "iam.amazonaws.com",
    "organizations.amazonaws.com",
    "route53.amazonaws.com",
    "signin.amazonaws.com",
    "sts.amazonaws.com",
)


# Only AWS can put an event whose source begins with "aws." on a bus (PutEvents refuses it to anyone else).
AWS_SOURCES = [{"prefix": "aws."}]


def cloudtrail_pattern(detail: dict[str, Any]) -> dict[str, Any]:
    """A pattern for CloudTrail records delivered by AWS itself, whose detail matches `detail`."""
    return {"source": AWS_SOURCES, "detail-type": CLOUDTRAIL_DETAIL_TYPES, "detail": detail}


def _compact(pattern: dict[str, Any]) -> str:
    return json.dumps(pattern, separators=(",", ":"))


def _matchers(condition: Condition) -> list[Any] | None:
    """The EventBridge matchers equivalent to one condition, or None when none is exact."""
    operand = condition.operand
    if condition.operator == "exists":
        return [{"exists": bool(operand)}]
    if condition.operator == "glob":
        return [{"wildcard": o} for o in (operand if isinstance(operand, list) else [operand])]
    if condition.operator == "one_of":
        matchers: list[Any] = []
        for value in operand if isinstance(operand, list) else []:
            # The classifier compares as lower-case text: true, "true" and "TRUE" alike; so must routing.
            if isinstance(value, bool):
                matchers += [value, {"equals-ignore-case": str(value).lower()}]
            elif isinstance(value, int | float):
                matchers += [value, str(value)]
            else:
                matchers.append({"equals-ignore-case": str(value)})
        return matchers
    return None  # prefix and suffix are case-insensitive in the catalogue; self compares with the caller


_ROOTS = ("responseElements.", "additionalEventData.", "userIdentity.")


def _parameters(rule: Rule) -> dict[str, Any] | None:
    """The part of a record's detail matching all of a rule's conditions (requestParameters, or the part
    the path names), or None when they cannot be expressed."""
    tree: dict[str, Any] = {}
    for condition in rule.when:
        matchers = _matchers(condition)
        if matchers is None or "[]" in condition.path:
            return None
        path = condition.path if condition.path.startswith(_ROOTS) else f"requestParameters.{condition.path}"
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                return None
            node = child
        if leaf in node:
            return None  # two conditions on one path are an AND a pattern cannot say
        node[leaf] = matchers
    return tree


def generic_matchers(words: GenericWords) -> list[dict[str, str]]:
    """eventName matchers for every name the generic layer may flag as destroying: its first word (or the
    word after Batch), or a destroying word anywhere. They over-approximate on purpose (StopInstances is
    routed, then classified benign): EventBridge has no word boundaries, and a miss is an agent nobody
    stops."""
    verbs = sorted(words.destroys | words.destroys_protection)
    return [
        *({"prefix": v} for v in verbs),
        *({"prefix": f"Batch{v}"} for v in verbs),
        *({"wildcard": f"*{w.replace(' ', '')}*"} for w in words.destroys_anywhere),
    ]


def generically_routed(catalogue: Catalogue) -> re.Pattern[str]:
    """What the generic route carries, as a regular expression over event names (for the other routes,
    which need not carry it again, and for tests)."""
    if catalogue.generic is None:
        return re.compile(r"(?!)")
    matchers = generic_matchers(catalogue.generic.words)
    return wildcard_pattern(m["wildcard"] if "wildcard" in m else m["prefix"] + "*" for m in matchers)


def routing(catalogue: Catalogue) -> tuple[dict[str, set[str]], list[dict[str, Any]]]:
    """(names routed by name, per source; parameter-level entries for the other rules). Names the generic
    route carries are left out of both."""
    generic = generically_routed(catalogue)
    by_name: dict[str, set[str]] = {}
    conditional: list[tuple[Rule, dict[str, Any]]] = []
    for rule in catalogue.rules:
        parameters = _parameters(rule) if rule.when else None
        if parameters is None:
            unrouted = {n for n in rule.names if not generic.match(n)}
            if unrouted:
                by_name.setdefault(rule.source, set()).update(unrouted)
        else:
            conditional.append((rule, parameters))
    entries = []
    for rule, parameters in conditional:
        # The name route carries this source's own names (whatever rule of the several it is packed into):
        # those need no narrower route.
        own = by_name.get(rule.source, set())
        names = [n for n in rule.names if not (n in own or generic.match(n))]
        if names:
            entries.append({"eventSource": [rule.source], "eventName": names, **parameters})
    return by_name, entries


def destructive_pattern(by_name: dict[str, set[str]]) -> dict[str, Any]:
    names = sorted({n for found in by_name.values() for n in found})
    return cloudtrail_pattern({"eventSource": sorted(by_name), "eventName": names})


def generic_pattern(catalogue: Catalogue, sources: list[str] | None = None) -> dict[str, Any]:
    """Any call, of any service, whose name the generic layer may flag as destroying or disabling."""
    if catalogue.generic is None:
        raise ValueError("the catalogue has no generic section")
    detail: dict[str, Any] = {"eventName": generic_matchers(catalogue.generic.words)}
    if sources is not None:
        detail["eventSource"] = sources
    return cloudtrail_pattern(detail)


def principal_writes_pattern(catalogue: Catalogue, sources: list[str] | None = None) -> dict[str, Any]:
    """A write that names a role, user, group or grantee: what the generic layer checks for a permissions
    write aimed at another principal. Writes only (readOnly false)."""
    if catalogue.generic is None:
        raise ValueError("the catalogue has no generic section")
    entries = []
    for parameter in catalogue.generic.words.principal_parameters:
        entry: dict[str, Any] = {
            "readOnly": [False],
            "errorCode": [{"exists": False}],
            "requestParameters": {parameter: [{"exists": True}]},
        }
        if sources is not None:
            entry["eventSource"] = sources
        entries.append(entry)
    return cloudtrail_pattern({"$or": entries})


def destructive_patterns(by_name: dict[str, set[str]], base: str) -> dict[str, dict[str, Any]]:
    """The name route in as few rules as the size limit allows (Base, Base2, ...), each a group of sources
    with the names routed for them. A rule matches every name it lists from every source it lists: grouping
    by source only narrows what a single rule would route."""
    groups: list[dict[str, set[str]]] = []
    for source in sorted(by_name):
        for group in groups:
            if len(_compact(destructive_pattern({**group, source: by_name[source]}))) <= PATTERN_SIZE_LIMIT:
                group[source] = by_name[source]
                break
        else:
            groups.append({source: by_name[source]})
    return {f"{base}{i + 1 if i else ''}": destructive_pattern(group) for i, group in enumerate(groups)}


def _packed(entries: list[dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """Parameter-level entries in as few rules as the size limit allows: Base, Base2, Base3, ..."""
    rules: list[list[dict[str, Any]]] = []
    for entry in entries:
        for group in rules:
            if len(_compact(_conditional_pattern([*group, entry]))) <= PATTERN_SIZE_LIMIT:
                group.append(entry)
                break
        else:
            rules.append([entry])
    return {f"{base}{i + 1 if i else ''}": _conditional_pattern(group) for i, group in enumerate(rules)}


def _conditional_pattern(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return cloudtrail_pattern(entries[0] if len(entries) == 1 else {"$or": entries})


def access_denied_pattern(catalogue: Catalogue, sources: list[str] | None = None) -> dict[str, Any]:
    """Refused calls, whatever the call: by errorCode (the listed codes and the globs), and failed console
    sign-ins by their outcome."""
    policy = catalogue.access_denied
    codes: list[Any] = [*sorted(policy.error_codes), *({"wildcard": g} for g in policy.error_code_globs)]
    refused: dict[str, Any] = {"errorCode": codes}
    failed = policy.failed_sign_in
    if failed is None or (sources is not None and failed.source not in sources):
        entries = [refused]
    else:
        sign_in = {
            "eventSource": [failed.source],
            "eventName": sorted(failed.names),
            "responseElements": {k: [v] for k, v in failed.response.items()},
        }
        entries = [refused, sign_in]
    if sources is not None:
        entries[0] = {**entries[0], "eventSource": sources}
    return cloudtrail_pattern(entries[0] if len(entries) == 1 else {"$or": entries})


def root_activity_pattern(sources: list[str] | None = None) -> dict[str, Any]:
    """Anything the root user does is reported, whatever the call: rare, and always worth a page."""
    detail: dict[str, Any] = {"userIdentity": {"type": ["Root"]}}
    if sources is not None:
        detail["eventSource"] = sources
    return cloudtrail_pattern(detail)


def agent_writes_pattern(sources: list[str] | None = None) -> dict[str, Any]:
    """Every successful write by an IAM role or user: what production's "agents are read-only" needs to
    see. Off by default (the RouteAgentWrites parameter): it invokes the responder for every write in the
    region, and the responder ignores, without an AWS call, those that are not an agent's in a watching
    environment."""
    detail: dict[str, Any] = {
        "readOnly": [False],
        "errorCode": [{"exists": False}],
        "userIdentity": {"type": ["AssumedRole", "IAMUser"]},
    }
    if sources is not None:
        detail["eventSource"] = sources
    return cloudtrail_pattern(detail)


# Generated rules that are off unless a template parameter turns them on: name -> the template condition.
OPTIONAL_RULES = {"AgentWrites": "RoutesAgentWrites", "ForwardGlobalAgentWrites": "ForwardsAgentWrites"}


def all_patterns(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """template.yaml's EventBridge rules, by name."""
    by_name, entries = routing(catalogue)
    return _checked(
        {
            "GenericDestructiveCalls": generic_pattern(catalogue),
            "PrincipalWrites": principal_writes_pattern(catalogue),
            **destructive_patterns(by_name, "DestructiveCalls"),
            **_packed(entries, "ConditionalCalls"),
            "AccessDenied": access_denied_pattern(catalogue),
            "RootActivity": root_activity_pattern(),
            "AgentWrites": agent_writes_pattern(),
        }
    )


def forwarder_patterns(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """What forwarder.yaml sends from us-east-1 to the responder's region: the responder's own routing,
    narrowed to the global services (so STS's every AssumeRole is not shipped across regions)."""
    by_name, entries = routing(catalogue)
    global_names = {s: n for s, n in by_name.items() if s in GLOBAL_SOURCES}
    global_entries = [e for e in entries if e["eventSource"][0] in GLOBAL_SOURCES]
    patterns = {
        "ForwardGlobalGenericDestructiveCalls": generic_pattern(catalogue, list(GLOBAL_SOURCES)),
        "ForwardGlobalPrincipalWrites": principal_writes_pattern(catalogue, list(GLOBAL_SOURCES)),
    }
    if global_names:
        patterns.update(destructive_patterns(global_names, "ForwardGlobalDestructiveCalls"))
    patterns.update(_packed(global_entries, "ForwardGlobalConditionalCalls") if global_entries else {})
    patterns["ForwardGlobalAccessDenied"] = access_denied_pattern(catalogue, list(GLOBAL_SOURCES))
    patterns["ForwardGlobalRootActivity"] = root_activity_pattern(list(GLOBAL_SOURCES))
    patterns["ForwardGlobalAgentWrites"] = agent_writes_pattern(list(GLOBAL_SOURCES))
    return _checked(patterns)


def _checked(patterns: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for name, pattern in patterns.items():
        size = len(_compact(pattern))
        if size > PATTERN_SIZE_LIMIT:
            raise ValueError(f"{name} pattern is {size} characters, over EventBridge's {PATTERN_SIZE_LIMIT}")
    return patterns


# --- writing the templates --------------------------------------------------------------------------

BEGIN = "# BEGIN generated by `guardrail patterns --write`: edit rules.yaml, not this block"
END = "# END generated"
_RETRY = [
    "RetryPolicy:",
    "  MaximumRetryAttempts: 185",
    "  MaximumEventAgeInSeconds: 86400",
]


def _yaml(pattern: dict[str, Any], indent: int) -> list[str]:
    import yaml

    class _NoAliases(yaml.SafeDumper):
        # A list used twice in a pattern (the sources of each $or entry) must be written twice:
        # CloudFormation rejects YAML aliases.
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(pattern, Dumper=_NoAliases, default_flow_style=None, width=100, sort_keys=True)
    return [" " * indent + line for line in text.splitlines()]


def template_events(catalogue: Catalogue) -> list[str]:
    """The responder's EventBridgeRule events, as template.yaml holds them (8 spaces in)."""
    lines = []
    for name, pattern in all_patterns(catalogue).items():
        lines += [f"{name}:", "  Type: EventBridgeRule", "  Properties:"]
        if name == "AccessDenied":
            lines.append(
                "    State: !If [RoutesReadOnly, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS, ENABLED]"
            )
        if name in OPTIONAL_RULES:
            lines.append(f"    State: !If [{OPTIONAL_RULES[name]}, ENABLED, DISABLED]")
        lines += [f"    {r}" for r in _RETRY]
        lines += ["    DeadLetterConfig:", "      Arn: !GetAtt FailureQueue.Arn", "    Pattern:"]
        lines += [line[8:] for line in _yaml(pattern, 14)]
    return [f"        {line}" for line in lines]


def _bus_rules(patterns: dict[str, dict[str, Any]], target: list[str], states: dict[str, str]) -> list[str]:
    """AWS::Events::Rule resources (2 spaces in) sending each pattern to another event bus."""
    lines: list[str] = []
    for name, pattern in patterns.items():
        lines += [
            f"{name}:",
            "  Type: AWS::Events::Rule",
            "  Properties:",
            f"    State: {states.get(name, 'ENABLED')}",
            "    EventPattern:",
            *[line[2:] for line in _yaml(pattern, 8)],
            "    Targets:",
            *[f"      {t}" for t in target],
            *[f"        {r}" for r in _RETRY],
            "        DeadLetterConfig:",
            "          Arn: !GetAtt ForwardDeadLetters.Arn",
            "",
        ]
    return [f"  {line}" if line else "" for line in lines]


def _optional_states(patterns: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {n: f"!If [{OPTIONAL_RULES[n]}, ENABLED, DISABLED]" for n in patterns if n in OPTIONAL_RULES}


def forwarder_rules(catalogue: Catalogue) -> list[str]:
    """forwarder.yaml's rules (2 spaces in)."""
    patterns = forwarder_patterns(catalogue)
    target = [
        "- Id: ResponderRegionBus",
        '  Arn: !Sub "arn:${AWS::Partition}:events:${ResponderRegion}:${AWS::AccountId}:event-bus/default"',
        "  RoleArn: !GetAtt ForwardRole.Arn",
    ]
    return _bus_rules(patterns, target, _optional_states(patterns))


def member_rules(catalogue: Catalogue) -> list[str]:
    """member.yaml's rules (2 spaces in): the responder's own routing, sent to the central event bus."""
    patterns = all_patterns(catalogue)
    target = ["- Id: CentralBus", "  Arn: !Ref CentralBusArn", "  RoleArn: !GetAtt ForwardRole.Arn"]
    states = _optional_states(patterns)
    states["AccessDenied"] = "!If [RoutesReadOnly, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS, ENABLED]"
    return _bus_rules(patterns, target, states)


def rewrite(text: str, block: list[str], indent: int) -> str:
    """Replace the generated block of a template (between the BEGIN and END markers)."""
    pad = " " * indent
    start, end = text.find(pad + BEGIN), text.find(pad + END)
    if start < 0 or end < start:
        raise ValueError("the template has no generated block (BEGIN/END markers)")
    head = text[: start + len(pad + BEGIN)]
    return head + "\n" + "\n".join(block).rstrip("\n") + "\n" + text[end:]
