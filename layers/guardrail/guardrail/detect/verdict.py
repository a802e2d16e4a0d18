"""The verdict on one API call: what detection concluded, and what the responder should do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guardrail.model import Decision, PrincipalKind

if TYPE_CHECKING:
    from guardrail.detect.catalogue import Rule
    from guardrail.environments import ThresholdHit
    from guardrail.model import ApiCall, Category, Environment, Severity
    from guardrail.settings import Settings


PRINCIPAL_TEXT_LIMIT = 2048  # a principal's ARN as kept; IAM's own are far shorter


# Not frozen, like ApiCall (see guardrail.model): a changed verdict is a copy (dataclasses.replace).
@dataclass(slots=True)
class Verdict:
    """What the classifier concluded about one call, and what the responder should do about it."""

    call: ApiCall
    category: Category
    severity: Severity
    decision: Decision
    reason: str
    environment: Environment
    rules: tuple[Rule, ...] = ()
    is_agent: bool = False
    is_protected: bool = False
    notes: tuple[str, ...] = field(default=())
    thresholds: tuple[ThresholdHit, ...] = field(default=())  # windows this event brought to their threshold

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    @property
    def top_rule(self) -> Rule | None:
        return self.rules[0] if self.rules else None

    def is_quiet(self, settings: Settings) -> bool:
        """No rule flags the call, no window of its environment counts it, and root did not make it: the
        responder logs it and does nothing more (handler.respond, which also keeps a watched agent's
        change in its flight record), and a backtest only counts it. One test for both, so that the
        backtest replays exactly the events the live responder acts on."""
        return (
            self.decision is Decision.IGNORE
            and self.call.principal.kind is not PrincipalKind.ROOT
            and not settings.policies[self.environment].counts(self.category, is_agent=self.is_agent)
        )

    def summary(self) -> dict[str, object]:
        """The classification as the CLI and the handler report it (one JSON object per event)."""
        call = self.call
        return {
            "event_id": call.event_id,
            "event_time": call.event_time.isoformat().replace("+00:00", "Z"),
            "event_source": call.event_source,
            "event_name": call.event_name,
            # Clipped: the summary is stored with the incident, and an item holds 400 KB at most.
            "principal": (call.principal.arn or call.principal.display)[:PRINCIPAL_TEXT_LIMIT],
            "account": call.account,
            "region": call.region,
            # StrEnum members are str: JSON takes them as they are.
            "environment": self.environment,
            "category": self.category,
            "severity": self.severity,
            "rule_ids": self.rule_ids,
            "decision": self.decision,
            "reason": self.reason,
            **({"thresholds": [h.to_dict() for h in self.thresholds]} if self.thresholds else {}),
        }
