"""The agents' fence: the policy that keeps AI agents away from the responder itself.

The responder can contain an agent only while the agent cannot reach it. Every resource of the stack has a
physical name that starts with the stack name (CloudFormation generates them so), which is what the fence
denies: the functions and layer, the EventBridge rules and bus, the state table, the topic, the queues,
the alarms, the log groups, the roles, the KMS key's alias, the stack itself; plus the containment
policies on the agents' own roles and users, AWSDenyAll's detachment, and the trail.

Two shapes (`guardrail fence --format`):
- boundary: a permissions boundary for the agents' roles and users (an Allow of everything, so the
  boundary takes nothing else away, and the Denies). A managed policy: at most 6,144 characters.
- scp: a service control policy for the accounts (the Denies only, each limited to the agents by
  aws:PrincipalArn, since an SCP applies to every principal in the account). At most 5,120 characters.
"""

from __future__ import annotations

import json
from typing import Any

BOUNDARY_LIMIT = 6_144  # IAM managed policy, characters without white space
SCP_LIMIT = 5_120  # Organizations service control policy
AWS_DENY_ALL = "arn:aws:iam::aws:policy/AWSDenyAll"


def _arn_glob(pattern: str) -> str:
    """An agent principal pattern (the responder's globs: `**` crosses a path) as an IAM ARN wildcard."""
    return pattern.replace("**/", "*").replace("**", "*")


def fence_statements(
    stack: str, account: str = "*", agent_roles: tuple[str, ...] = (), agent_users: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The Deny statements, for a stack named `stack` in `account` ('*': any account of the organization)."""
    own = f"{stack}-*"
    agents = [f"arn:aws:iam::{account}:role/{_arn_glob(r)}" for r in agent_roles] + [
        f"arn:aws:iam::{account}:user/{_arn_glob(u)}" for u in agent_users
    ]
    statements: list[dict[str, Any]] = [
        {
            # One statement for every resource of the stack, to keep an SCP that names many agent paths
            # under its size limit: each action only ever applies to its own service's ARNs.
            "Sid": "NotTheResponder",
            "Effect": "Deny",
            "Action": [
                "lambda:*",  # its functions and layer (InvokeFunction of the release function included)
                "events:*",  # its routing rules, their targets, the central bus
                "dynamodb:*",  # its state
                "sns:*",  # its topic and subscriptions
                "sqs:*",  # its quarantine and failure queues
                "logs:*",  # its log groups
                "iam:*",  # its roles
                "cloudformation:*",  # the stack itself
                "scheduler:*",  # the scheduled check's schedule
                "kms:*",  # its key's alias
                "secretsmanager:*",  # the Slack secret: its signing secret would forge a release from Slack
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DisableAlarmActions",
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:SetAlarmState",
            ],
            "Resource": [
                f"arn:aws:lambda:*:{account}:function:{own}",
                f"arn:aws:lambda:*:{account}:layer:{own}",
                f"arn:aws:events:*:{account}:rule/{own}",
                f"arn:aws:events:*:{account}:event-bus/{own}",
                f"arn:aws:dynamodb:*:{account}:table/{own}",
                f"arn:aws:sns:*:{account}:{own}",
                f"arn:aws:sqs:*:{account}:{own}",
                f"arn:aws:logs:*:{account}:log-group:{own}",
                f"arn:aws:iam::{account}:role/{own}",
                f"arn:aws:iam::{account}:policy/guardrail/*",  # the prepared Identity Center deny
                f"arn:aws:cloudformation:*:{account}:stack/{stack}/*",
                f"arn:aws:kms:*:{account}:alias/{own}",
                f"arn:aws:cloudwatch:*:{account}:alarm:{own}",
                f"arn:aws:scheduler:*:{account}:schedule/*/{own}",
                # Named by the operator, not the stack: docs/notifications.md asks for one of these names.
                f"arn:aws:secretsmanager:*:{account}:secret:{own}",
                f"arn:aws:secretsmanager:*:{account}:secret:guardrail/*",
            ],
        },
        {
            # The Slack actions queue's mapping to the release function has no name of its own (a UUID):
            # the function it feeds names it.
            "Sid": "NotItsQueueMappings",
            "Effect": "Deny",
            "Action": ["lambda:DeleteEventSourceMapping", "lambda:UpdateEventSourceMapping"],
            "Resource": "*",
            "Condition": {"ArnLike": {"lambda:FunctionArn": f"arn:aws:lambda:*:{account}:function:{own}"}},
        },
        {
            "Sid": "NotItsKeyByAlias",
            "Effect": "Deny",
            "Action": ["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant"],
            "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": f"alias/{own}"}},
        },
        {
            # The responder falls back to AWSDenyAll when an inline deny cannot be written.
            "Sid": "NeverDetachAwsDenyAll",
            "Effect": "Deny",
            "Action": ["iam:DetachRolePolicy", "iam:DetachUserPolicy"],
            "Resource": "*",
            "Condition": {"ArnEquals": {"iam:PolicyARN": AWS_DENY_ALL}},
        },
        {
            "Sid": "NotTheTrail",
            "Effect": "Deny",
            "Action": [
                "cloudtrail:StopLogging",
                "cloudtrail:DeleteTrail",
                "cloudtrail:UpdateTrail",
                "cloudtrail:PutEventSelectors",
                "cloudtrail:PutInsightSelectors",
            ],
            "Resource": "*",
        },
    ]
    if agents:
        # An agent's own policies are its guardrails, and where the containment is written.
        statements.append(
            {
                "Sid": "NotTheirOwnPolicies",
                "Effect": "Deny",
                "Action": [
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:PutRolePermissionsBoundary",
                    "iam:DeleteRolePermissionsBoundary",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:PutUserPolicy",
                    "iam:DeleteUserPolicy",
                    "iam:AttachUserPolicy",
                    "iam:DetachUserPolicy",
                    "iam:PutUserPermissionsBoundary",
                    "iam:DeleteUserPermissionsBoundary",
                    "iam:CreateAccessKey",
                    "iam:UpdateAccessKey",
                ],
                "Resource": agents,
            }
        )
    return statements


def fence(
    stack: str,
    *,
    form: str = "boundary",
    account: str = "*",
    agent_roles: tuple[str, ...] = (),
    agent_users: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The fence as a policy document of the given form (boundary or scp)."""
    statements = fence_statements(stack, account, agent_roles, agent_users)
    if form == "boundary":
        allow = {"Sid": "WhatTheirOwnPoliciesAllow", "Effect": "Allow", "Action": "*", "Resource": "*"}
        return {"Version": "2012-10-17", "Statement": [allow, *statements]}
    if form == "scp":
        agents = [f"arn:aws:iam::{account}:role/{_arn_glob(r)}" for r in agent_roles] + [
            f"arn:aws:iam::{account}:user/{_arn_glob(u)}" for u in agent_users
        ]
        if not agents:
            raise ValueError(
                "an SCP applies to every principal of the account: name the agents' roles or users"
            )
        only_agents = {"ArnLike": {"aws:PrincipalArn": agents}}
        scoped = []
        for statement in statements:
            condition = {**statement.get("Condition", {}), **only_agents}
            scoped.append({**statement, "Condition": condition})
        return {"Version": "2012-10-17", "Statement": scoped}
    raise ValueError(f"unknown format {form!r}: boundary or scp")


def size(document: dict[str, Any]) -> int:
    """A policy's size as IAM and Organizations count it: its JSON without white space."""
    return len(json.dumps(document, separators=(",", ":")))
