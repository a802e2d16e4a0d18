"""`guardrail sso prepare`: make the agents' permission sets reference the prepared deny policy, once.

The responder contains an Identity Center user by writing their session id into the customer-managed
policy `/guardrail/GuardrailIdentityCenterDeny` that every account carries (template.yaml, member.yaml).
That only stops sessions of permission sets that reference the policy: this command attaches the reference
to the permission sets (all of the instance's, or those named), provisions each to the accounts it is
provisioned to, and reports what is covered. Run it in the Identity Center administration account (the
management account or the delegated administrator), with the operator's credentials.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from guardrail.errors import GuardrailError
from guardrail.respond.containment import (
    IDENTITY_CENTER_PATH,
    IDENTITY_CENTER_POLICY,
    provision_permission_set,
)

REFERENCE = {"Name": IDENTITY_CENTER_POLICY, "Path": IDENTITY_CENTER_PATH}
PREPARE_PERMISSIONS = (
    "sso:ListInstances",
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:ListCustomerManagedPolicyReferencesInPermissionSet",
    "sso:AttachCustomerManagedPolicyReferenceToPermissionSet",
    "sso:ProvisionPermissionSet",
    "sso:DescribePermissionSetProvisioningStatus",
    "sso:ListAccountsForProvisionedPermissionSet",
)


@dataclass
class Coverage:
    """One permission set: whether it references the policy now, and where it is provisioned."""

    name: str
    arn: str
    referenced_before: bool
    attached: bool = False
    provisioning: str = "not needed"  # SUCCEEDED, FAILED (with the reason), IN_PROGRESS, not needed
    accounts: list[str] = field(default_factory=list)

    @property
    def covered(self) -> bool:
        return (self.referenced_before or self.attached) and self.provisioning in ("not needed", "SUCCEEDED")


def prepare(
    sso: Any,
    instance_arn: str | None = None,
    names: list[str] | None = None,
    *,
    apply: bool = True,
    wait_seconds: float = 60.0,
    sleep: Any = time.sleep,
) -> tuple[str, list[Coverage]]:
    """Attach the reference where it is missing and provision; with apply=False, only report."""
    if instance_arn is None:
        instances = sso.list_instances().get("Instances", [])
        if len(instances) != 1:
            raise GuardrailError(
                f"{len(instances)} Identity Center instances visible here: pass --instance-arn "
                "(run in the management account or the delegated administrator)"
            )
        instance_arn = str(instances[0]["InstanceArn"])
    found: list[Coverage] = []
    for arn in _permission_sets(sso, instance_arn):
        name = str(
            sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)["PermissionSet"][
                "Name"
            ]
        )
        if names and name not in names:
            continue
        references = sso.list_customer_managed_policy_references_in_permission_set(
            InstanceArn=instance_arn, PermissionSetArn=arn
        ).get("CustomerManagedPolicyReferences", [])
        coverage = Coverage(
            name,
            arn,
            any(
                r.get("Name") == IDENTITY_CENTER_POLICY and r.get("Path", "/") == IDENTITY_CENTER_PATH
                for r in references
            ),
        )
        if apply and not coverage.referenced_before:
            sso.attach_customer_managed_policy_reference_to_permission_set(
                InstanceArn=instance_arn, PermissionSetArn=arn, CustomerManagedPolicyReference=REFERENCE
            )
            coverage.attached = True
            coverage.provisioning = provision_permission_set(
                sso, instance_arn, arn, wait_seconds=wait_seconds, sleep=sleep
            )
        coverage.accounts = list(
            sso.list_accounts_for_provisioned_permission_set(
                InstanceArn=instance_arn, PermissionSetArn=arn
            ).get("AccountIds", [])
        )
        found.append(coverage)
    missing = set(names or []) - {c.name for c in found}
    if missing:
        raise GuardrailError(f"no permission set named {', '.join(sorted(missing))} in {instance_arn}")
    return instance_arn, found


def _permission_sets(sso: Any, instance_arn: str) -> list[str]:
    arns: list[str] = []
    kwargs: dict[str, Any] = {"InstanceArn": instance_arn}
    while True:
        page = sso.list_permission_sets(**kwargs)
        arns += page.get("PermissionSets", [])
        if not page.get("NextToken"):
            return arns
        kwargs["NextToken"] = page["NextToken"]


def report(instance_arn: str, found: list[Coverage]) -> str:
    lines = [
        f"Identity Center instance {instance_arn}: permission sets and {IDENTITY_CENTER_PATH}{IDENTITY_CENTER_POLICY}"
    ]
    for c in found:
        state = (
            "already referenced"
            if c.referenced_before
            else ("attached now" if c.attached else "NOT referenced")
        )
        accounts = ", ".join(c.accounts) or "no account yet"
        lines.append(
            f"  {'covered ' if c.covered else 'NOT COVERED'}  {c.name}: {state}; provisioning {c.provisioning}; accounts: {accounts}"
        )
    uncovered = [c.name for c in found if not c.covered]
    if uncovered:
        lines.append(
            "Not covered: an agent on these permission sets is denied by nothing the responder writes. Run "
            "without --check to attach the reference, and deploy the stack (member.yaml) in every account first."
        )
    return "\n".join(lines) + "\n"
