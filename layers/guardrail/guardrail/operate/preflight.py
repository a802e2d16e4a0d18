"""`guardrail preflight`: what the deployed responder will watch, read-only, with the operator's credentials.

Right after `sam deploy`: which roles and users of this account the agent patterns match (and which of them
the protected patterns exempt), whether a trail feeds the responder this region's management events,
whether its routing rules are in place and enabled, what each known account's environment does to an
agent, and whether it runs in dry run. Anything that would leave the responder silently useless (no agent
matches, no trail, a routing rule missing or disabled) is an error, and the command exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardrail.errors import ConfigurationError
from guardrail.model import Principal, PrincipalKind
from guardrail.settings import Settings

if TYPE_CHECKING:
    from guardrail.aws import AwsClients

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass
class Finding:
    level: str
    check: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message}


@dataclass
class Preflight:
    source: str  # where the settings came from: the stack's responder function, or the environment
    account: str
    region: str
    agents: list[dict[str, str]] = field(default_factory=list)  # watched: {"arn", "kind"}
    exempt: list[dict[str, str]] = field(default_factory=list)  # agent and protected: never contained
    environments: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(f.level == ERROR for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "account": self.account,
            "region": self.region,
            "agents": self.agents,
            "exempt": self.exempt,
            "environments": self.environments,
            "findings": [f.to_dict() for f in self.findings],
            "ok": not self.failed,
        }

    def render(self) -> str:
        lines = [
            f"guardrail preflight: account {self.account}, region {self.region} (settings: {self.source})"
        ]
        lines.append(f"\nAgents it will watch ({len(self.agents)}):")
        lines += [f"  {a['kind']:5} {a['arn']}" for a in self.agents] or ["  none"]
        if self.exempt:
            lines.append(f"\nAgents it will never contain, protected ({len(self.exempt)}):")
            lines += [f"  {a['kind']:5} {a['arn']}" for a in self.exempt]
        lines.append("\nEnvironments:")
        for env in self.environments:
            lines.append(f"  {env['account']}: {env['environment']}: {env['agent_writes']}")
        lines.append("\nChecks:")
        lines += [f"  {f.level.upper():8} {f.check}: {f.message}" for f in self.findings]
        verdict = "FAILED: the responder would not protect this account as deployed" if self.failed else "ok"
        lines.append(f"\n{verdict}")
        return "\n".join(lines)


def deployed_settings(aws: AwsClients, stack: str) -> tuple[Settings, str, str]:
    """(settings, responder function ARN, where they came from): the responder function's own environment,
    found through the stack, validated as the function validates it."""
    try:
        resource = aws.cloudformation.describe_stack_resource(
            StackName=stack, LogicalResourceId="ResponderFunction"
        )["StackResourceDetail"]
    except Exception as exc:  # a missing stack is the operator's error, said plainly
        raise ConfigurationError(f"stack {stack!r}: no ResponderFunction found ({exc})") from None
    function = aws.lambda_.get_function_configuration(FunctionName=resource["PhysicalResourceId"])
    variables = (function.get("Environment") or {}).get("Variables") or {}
    return Settings.from_env(variables), function["FunctionArn"], f"stack {stack}, {function['FunctionName']}"


def preflight(
    aws: AwsClients, settings: Settings, *, responder_arn: str | None, source: str, region: str
) -> Preflight:
    identity = aws.sts.get_caller_identity()
    report = Preflight(source=source, account=identity["Account"], region=region)
    from guardrail.respond.check import deployed_rules

    _principals(aws, settings, report)
    _trail(aws, report)
    # The stack's rules, listed once for both the routing check and the environments' AgentWrites.
    deployed = deployed_rules(aws, settings) if responder_arn is not None else None
    _routing(aws, settings, responder_arn, deployed, report)
    _environments(settings, deployed, report)
    if settings.dry_run:
        report.findings.append(
            Finding(
                WARNING,
                "dry run",
                "GUARDRAIL_DRY_RUN is on: incidents are reported, nothing is contained. Go live: "
                "sam deploy --parameter-overrides DryRun=false (README, 'Go live')",
            )
        )
    else:
        report.findings.append(Finding(OK, "dry run", "off: agents are contained"))
    return report


def _principals(aws: AwsClients, settings: Settings, report: Preflight) -> None:
    iam = aws.iam
    roles = (r for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"])
    users = (u for page in iam.get_paginator("list_users").paginate() for u in page["Users"])
    candidates = [(PrincipalKind.ROLE, r["Arn"], r["RoleName"]) for r in roles] + [
        (PrincipalKind.USER, u["Arn"], u["UserName"]) for u in users
    ]
    for kind, arn, name in candidates:
        principal = Principal(kind, arn, report.account, name, issuer_arn=arn)
        if not settings.is_agent(principal):
            continue
        entry = {"arn": arn, "kind": kind.value}
        (report.exempt if settings.is_protected(principal) else report.agents).append(entry)
    patterns = ", ".join(settings.agent_principals.patterns) or "(none)"
    if report.agents:
        report.findings.append(
            Finding(
                OK, "agents", f"{len(report.agents)} role(s) or user(s) match the agent patterns ({patterns})"
            )
        )
    else:
        report.findings.append(
            Finding(
                ERROR,
                "agents",
                f"no role or user in this account matches the agent patterns ({patterns}): the responder "
                "would contain nobody. Set AgentRoleNames / AgentUserNames to your agents' names",
            )
        )
    for entry in report.exempt:
        report.findings.append(
            Finding(
                WARNING,
                "agents",
                f"{entry['arn']} matches both the agent and the protected patterns: reported, never contained",
            )
        )


def _trail(aws: AwsClients, report: Preflight) -> None:
    from guardrail.respond.check import Deployment, trail_drift

    problems = trail_drift(aws, Deployment("", (), report.region))
    if problems:
        report.findings += [Finding(ERROR, "trail", p) for p in problems]
    else:
        report.findings.append(Finding(OK, "trail", f"a trail logs management events in {report.region}"))


def _routing(
    aws: AwsClients,
    settings: Settings,
    responder_arn: str | None,
    deployed: dict[str, dict[str, Any]] | None,
    report: Preflight,
) -> None:
    from guardrail.respond.check import Deployment, routing_drift

    if responder_arn is None:
        report.findings.append(
            Finding(WARNING, "routing", "not checked: give --stack (or GUARDRAIL_RESPONDER_FUNCTION_ARN)")
        )
        return
    problems = routing_drift(aws, settings, Deployment(responder_arn, (), report.region), deployed)
    if problems:
        report.findings += [Finding(ERROR, "routing", p) for p in problems]
    else:
        report.findings.append(
            Finding(OK, "routing", "every routing rule is in place, enabled, and targets the responder")
        )


def _environments(settings: Settings, deployed: dict[str, dict[str, Any]] | None, report: Preflight) -> None:
    from guardrail.respond.check import agent_writes_routed

    routed = agent_writes_routed(deployed) if deployed is not None else None
    accounts = dict(settings.account_environments)
    accounts.setdefault(report.account, settings.environment_of(report.account))
    for account, environment in sorted(accounts.items()):
        policy = settings.policies[environment]
        if policy.writes is None:
            writes = "an agent's writes that no rule flags are ignored"
        elif routed:
            writes = f"any successful write by an agent is {policy.writes}"
        else:
            writes = (
                f"an agent's writes would be {policy.writes}, but the AgentWrites route is off "
                "(RouteAgentWrites=false): only writes a rule or the generic layer flags reach the responder"
            )
            report.findings.append(
                Finding(
                    WARNING,
                    "environments",
                    f"account {account} is {environment}, whose policy watches every write by an agent, "
                    "but writes no rule flags are not routed: deploy with RouteAgentWrites=true to see them",
                )
            )
        report.environments.append(
            {
                "account": account,
                "environment": environment.value,
                "summary": policy.summary,
                "agent_writes": writes,
            }
        )
