"""EventBridge event patterns generated from the rule catalogue, so routing and classification agree.

Patterns must stay under EventBridge's default 2,048-character limit. Names that begin with a
destructive verb are routed by prefix (``{"prefix": "Delete"}``); the rest are listed exactly. A prefix
routes some calls no rule flags (DeleteTags on an Owner tag); the classifier ignores those, and
routing a little too much is the safe side of that trade.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from guardrail.cloudtrail import CLOUDTRAIL_DETAIL_TYPE

if TYPE_CHECKING:
    from guardrail.rules import Catalogue

PATTERN_SIZE_LIMIT = 2048
PREFIX_VERBS = ("Delete", "Disable", "Detach", "Remove", "Stop", "Terminate", "Deregister", "Purge", "Leave")
_VERB = re.compile(r"^[A-Z][a-z]+")


def _compact(pattern: dict[str, Any]) -> str:
    return json.dumps(pattern, separators=(",", ":"))


def destructive_pattern(catalogue: Catalogue) -> dict[str, Any]:
    sources = catalogue.sources()
    names = sorted({n for found in sources.values() for n in found})
    verbs = sorted({m.group() for n in names if (m := _VERB.match(n)) and m.group() in PREFIX_VERBS})
    exact = [n for n in names if not n.startswith(tuple(verbs))]
    return {
        "detail-type": [CLOUDTRAIL_DETAIL_TYPE],
        "detail": {
            "eventSource": sorted(sources),
            "eventName": [*({"prefix": v} for v in verbs), *exact],
        },
    }


def access_denied_pattern(catalogue: Catalogue) -> dict[str, Any]:
    return {
        "detail-type": [CLOUDTRAIL_DETAIL_TYPE],
        "detail": {"errorCode": sorted(catalogue.access_denied.error_codes)},
    }


# CloudTrail delivers these services' events to EventBridge in us-east-1 only.
GLOBAL_SOURCES = (
    "cloudfront.amazonaws.com",
    "iam.amazonaws.com",
    "organizations.amazonaws.com",
    "route53.amazonaws.com",
    "sts.amazonaws.com",
)


def forwarder_patterns(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """What forwarder.yaml sends from us-east-1 to the responder's region: the responder's own routing,
    narrowed to the global services (so STS's every AssumeRole is not shipped across regions)."""
    destructive = destructive_pattern(catalogue)
    destructive["detail"]["eventSource"] = [
        s for s in destructive["detail"]["eventSource"] if s in GLOBAL_SOURCES
    ]
    denied = access_denied_pattern(catalogue)
    denied["detail"]["eventSource"] = list(GLOBAL_SOURCES)
    return _checked({"ForwardGlobalDestructiveCalls": destructive, "ForwardGlobalAccessDenied": denied})


def all_patterns(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Patterns by the template's rule name; each checked against the size limit."""
    return _checked(
        {
            "DestructiveCalls": destructive_pattern(catalogue),
            "AccessDenied": access_denied_pattern(catalogue),
        }
    )


def _checked(patterns: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for name, pattern in patterns.items():
        size = len(_compact(pattern))
        if size > PATTERN_SIZE_LIMIT:
            raise ValueError(f"{name} pattern is {size} characters, over EventBridge's {PATTERN_SIZE_LIMIT}")
    return patterns
