"""Undo what an agent did: the recovery plan of a damage report, carried out one step at a time.

Every AWS call a step may make is listed in UNDO_OPERATIONS with the IAM permissions it needs: a recovery
entry naming anything else is refused when the book is checked (tests/unit/test_recovery.py), so the data
file cannot smuggle in a destructive call. `guardrail undo --apply` runs the plan's steps with the
operator's credentials; the responder runs the steps of the kinds GUARDRAIL_AUTO_RESTORE names, right after
a containment, with its own (the template grants exactly those, when the parameter is set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.detect.recovery import iso
from guardrail.errors import GuardrailError
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from datetime import datetime

    from guardrail.detect.recovery import Step
    from guardrail.model import AutoRestore
    from guardrail.report.damage import DamageLine, DamageReport

# Each call a recovery step may make, and what IAM must allow for it. Only calls that put something back.
UNDO_OPERATIONS: dict[str, tuple[str, ...]] = {
    "kms:CancelKeyDeletion": ("kms:CancelKeyDeletion",),
    "kms:EnableKey": ("kms:EnableKey",),
    "kms:EnableKeyRotation": ("kms:EnableKeyRotation",),
    "secretsmanager:RestoreSecret": ("secretsmanager:RestoreSecret",),
    "s3:PutBucketVersioning": ("s3:PutBucketVersioning",),
    "cloudtrail:StartLogging": ("cloudtrail:StartLogging",),
    # Reads the selectors first, and only adds management events to them (restore: management-events).
    "cloudtrail:PutEventSelectors": ("cloudtrail:GetEventSelectors", "cloudtrail:PutEventSelectors"),
    "guardduty:UpdateDetector": ("guardduty:UpdateDetector",),
    "config:StartConfigurationRecorder": ("config:StartConfigurationRecorder",),
    "events:EnableRule": ("events:EnableRule",),
    "rds:ModifyDBInstance": ("rds:ModifyDBInstance",),
    "dynamodb:UpdateContinuousBackups": ("dynamodb:UpdateContinuousBackups",),
}


def heal_permissions() -> set[str]:
    """What the responder needs to run the self-healing steps of every kind (the template grants these)."""
    from guardrail.detect.recovery import default_book

    return {
        permission
        for entry in default_book().entries
        if entry.heal is not None
        for step in entry.steps
        for permission in UNDO_OPERATIONS[step.call]
    }


class UndoFailed(GuardrailError):
    """A step of the recovery plan failed: the plan stopped there."""


class ClientFactory(Protocol):
    def __call__(self, service: str, region: str) -> Any: ...


@dataclass(frozen=True)
class PlannedStep:
    number: int
    line: DamageLine
    step: Step

    @property
    def deadline(self) -> datetime | None:
        return self.line.recovery.deadline if self.line.recovery else None

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.step.params.items())
        change = self.line.change
        where = f"account {change.account}, {change.region}"
        return f"{self.step.call}({params}) in {where}, undoing {change.name} at {iso(change.time)}"


@dataclass(frozen=True)
class UndoPlan:
    steps: tuple[PlannedStep, ...]
    by_hand: tuple[DamageLine, ...]
    lost: tuple[DamageLine, ...]
    unknown: tuple[DamageLine, ...]
    left_out: int = 0  # older changes the report did not list, so not in this plan


def plan_of(report: DamageReport) -> UndoPlan:
    """The steps that put back what can be put back, oldest change first; and what a person must do."""
    steps: list[PlannedStep] = []
    for line in report.undoable():
        assert line.recovery is not None
        for step in line.recovery.steps:
            steps.append(PlannedStep(len(steps) + 1, line, step))
    lines = report.lines
    return UndoPlan(
        tuple(steps),
        tuple(x for x in lines if x.status == "by_hand"),
        tuple(x for x in lines if x.status == "lost"),
        tuple(x for x in lines if x.status == "unknown"),
        report.clipped,
    )


def run_step(step: Step, client: Any) -> str | None:
    """One step's AWS call; its request id. Refuses a call UNDO_OPERATIONS does not list."""
    if step.call not in UNDO_OPERATIONS:
        raise UndoFailed(f"{step.call} is not a recovery call this tool makes")
    from botocore import xform_name

    params = dict(step.params)
    if step.restore == "management-events":
        params = _with_management_events(client, str(params["TrailName"]))
    response = getattr(client, xform_name(step.operation))(**params)
    return str(response.get("ResponseMetadata", {}).get("RequestId") or "") or None


def _with_management_events(client: Any, trail: str) -> dict[str, Any]:
    """The trail's selectors with management events (read and write) logged again; data events kept."""
    current = client.get_event_selectors(TrailName=trail)
    advanced = current.get("AdvancedEventSelectors") or []
    if advanced:
        kept = [
            s
            for s in advanced
            if not any(
                f.get("Field") == "eventCategory" and "Management" in (f.get("Equals") or [])
                for f in s.get("FieldSelectors", [])
            )
        ]
        management = {
            "Name": "Management events (put back by guardrail)",
            "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}],
        }
        return {"TrailName": trail, "AdvancedEventSelectors": [management, *kept]}
    selectors = current.get("EventSelectors") or [{}]
    fixed = [dict(s) for s in selectors]
    fixed[0] = {**fixed[0], "ReadWriteType": "All", "IncludeManagementEvents": True}
    return {"TrailName": trail, "EventSelectors": fixed}


@dataclass
class StepResult:
    step: PlannedStep
    request_id: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.number,
            "call": self.step.step.call,
            "params": dict(self.step.step.params),
            "event_id": self.step.line.change.event_id,
            "request_id": self.request_id,
            "error": self.error,
        }


@dataclass
class Applied:
    done: list[StepResult] = field(default_factory=list)
    failed: StepResult | None = None


def apply(
    plan: UndoPlan,
    clients: ClientFactory,
    now: datetime,
    record: Any = None,
    *,
    account: str | None = None,
) -> Applied:
    """Run the plan's steps in order; `record(kind, details)` is called after each (the audit trail).
    Stops at the first failure (or a deadline passed, or a step in another account than `account`) and
    raises UndoFailed with what was done."""
    applied = Applied()
    for planned in plan.steps:
        change = planned.line.change
        result = StepResult(planned)
        problem = None
        if account is not None and change.account and change.account != account:
            problem = f"the change is in account {change.account}, these credentials are for {account}"
        elif planned.deadline is not None and planned.deadline <= now:
            problem = f"too late: the deadline was {iso(planned.deadline)}"
        if problem is None:
            try:
                result.request_id = run_step(planned.step, clients(planned.step.service, change.region))
            except Exception as exc:  # the AWS error, verbatim: the operator decides what next
                problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            result.error = problem
            applied.failed = result
            if record is not None:
                record("undo_failed", result.to_dict())
            raise UndoFailed(
                f"step {planned.number} ({planned.step.call}) failed: {problem}; "
                f"{len(applied.done)} step(s) done before it, none after"
            )
        applied.done.append(result)
        if record is not None:
            record("undo", result.to_dict())
    return applied


def heal_plan(report: DamageReport, kinds: frozenset[AutoRestore], own_prefix: str) -> UndoPlan:
    """The steps the responder runs by itself: changes of the enabled kinds that succeeded; a responder
    rule only if it is this responder's own (its name starts with the stack's prefix)."""
    plan = plan_of(report)
    chosen = []
    for planned in plan.steps:
        recovery = planned.line.recovery
        if recovery is None or recovery.heal is None or recovery.heal not in kinds:
            continue
        if recovery.heal.value == "responder-rules" and not str(
            planned.step.params.get("Name", "")
        ).startswith(own_prefix):
            continue
        chosen.append(planned)
    return UndoPlan(tuple(chosen), (), (), ())


def heal(
    report: DamageReport,
    kinds: frozenset[AutoRestore],
    own_prefix: str,
    clients: ClientFactory,
    now: datetime,
    account: str,
    record: Any = None,
) -> tuple[list[str], list[str]]:
    """Run the self-healing steps; (what was put back, what could not be), each as a sentence. Every step
    is tried: one failure does not leave the others undone."""
    restored, failed = [], []
    for planned in heal_plan(report, kinds, own_prefix).steps:
        single = UndoPlan((planned,), (), (), ())
        try:
            apply(single, clients, now, record, account=account)
            restored.append(planned.describe())
            metrics.add_metric(name="AutoRestored", unit=MetricUnit.Count, value=1)
        except UndoFailed as exc:
            failed.append(f"{planned.describe()}: {exc}")
            metrics.add_metric(name="AutoRestoreFailures", unit=MetricUnit.Count, value=1)
            logger.error("self-healing step failed", extra={"step": planned.describe(), "error": str(exc)})
    return restored, failed
