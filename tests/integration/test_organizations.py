"""One central responder for an organization, against moto with several accounts and IAM enforced.

The central account (the responder's) manages a moto organization with two member accounts, tagged
development and production. Each member holds the containment role of member.yaml, with member.yaml's own
permission policy (rendered from the template, not copied), and an agent role.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from guardrail.aws import AwsClients
from guardrail.operate.replay import CallRecorder, EmbeddedAws, agent_is_denied, invoke, load_handler
from guardrail.respond.release import release
from guardrail.respond.runtime import Runtime, use_runtime
from guardrail.settings import Settings
from tests.conftest import ROOT, load_event
from tests.integration.conftest import fresh_id

CENTRAL = "999988887777"
SAMPLE_ACCOUNT = "111122223333"
EXTERNAL_ID = "guardrail-test-external-id-0123"
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


class _CfnLoader(yaml.SafeLoader):
    pass


_CfnLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: {
        suffix: loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node, deep=True)
    },
)


def _render(node: Any, parameters: dict[str, Any]) -> Any:
    """The few intrinsics member.yaml's policy uses (Ref, Join, Split, Sub), resolved."""
    if isinstance(node, list):
        return [_render(n, parameters) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return parameters[node["Ref"]]
    if set(node) == {"Join"}:
        delimiter, values = node["Join"]
        rendered = _render(values, parameters)
        flat = [v for item in rendered for v in (item if isinstance(item, list) else [item])]
        return delimiter.join(flat)
    if set(node) == {"Split"}:
        delimiter, value = node["Split"]
        return _render(value, parameters).split(delimiter)
    if set(node) == {"Sub"}:
        text = node["Sub"]
        for name, value in parameters.items():
            text = text.replace("${" + name + "}", str(value))
        return text
    return {k: _render(v, parameters) for k, v in node.items()}


def member_policy(account: str) -> str:
    template = yaml.load((ROOT / "member.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    (policy,) = template["Resources"]["ContainmentRole"]["Properties"]["Policies"]
    parameters = {
        "AgentRoleNames": ["AIAgent*"],
        "AgentUserNames": ["ai-agent*"],
        "ContainmentRoleName": "GuardrailContainment",
        "AWS::Partition": "aws",
        "AWS::AccountId": account,
    }
    return json.dumps(_render(policy["PolicyDocument"], parameters))


def in_account(event: dict[str, Any], account: str) -> dict[str, Any]:
    """A sample event, as if it happened in another account (every mention of the sample's account)."""
    rewritten: dict[str, Any] = json.loads(json.dumps(event).replace(SAMPLE_ACCOUNT, account))
    rewritten["detail"]["eventID"] = fresh_id()
    return rewritten


@dataclass
class Organization:
    aws: EmbeddedAws
    organization_id: str
    development: str
    production: str
    agents: dict[str, boto3.session.Session]

    def settings_env(self) -> dict[str, str]:
        return {
            **self.aws.settings_env,
            "GUARDRAIL_ORGANIZATION_ID": self.organization_id,
            "GUARDRAIL_MEMBER_ROLE_NAME": "GuardrailContainment",
            "GUARDRAIL_MEMBER_EXTERNAL_ID": EXTERNAL_ID,
            "GUARDRAIL_ENVIRONMENT_TAG": "Environment",
        }

    def session_as(self, role_arn: str, external_id: str | None = None) -> boto3.session.Session:
        extra = {"ExternalId": external_id} if external_id else {}
        credentials = (
            self.aws.session()
            .client("sts")
            .assume_role(RoleArn=role_arn, RoleSessionName="test", **extra)["Credentials"]
        )
        return boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name="us-east-1",
        )


@pytest.fixture
def organization() -> Iterator[Organization]:
    with EmbeddedAws(account=CENTRAL) as aws:
        aws._post("/moto-api/reset-auth", "inf")  # set the accounts up as their administrators would
        org = aws.session().client("organizations")
        organization_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
        accounts = {}
        for environment in ("development", "production"):
            status = org.create_account(AccountName=environment, Email=f"{environment}@example.com")
            account = status["CreateAccountStatus"]["AccountId"]
            org.tag_resource(ResourceId=account, Tags=[{"Key": "Environment", "Value": environment}])
            accounts[environment] = account
        members = Organization(aws, organization_id, accounts["development"], accounts["production"], {})
        for account in accounts.values():
            admin = members.session_as(f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole")
            iam = admin.client("iam")
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{CENTRAL}:user/guardrail-responder"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
                    }
                ],
            }
            iam.create_role(RoleName="GuardrailContainment", AssumeRolePolicyDocument=json.dumps(trust))
            iam.put_role_policy(
                RoleName="GuardrailContainment",
                PolicyName="ContainAgentsOnly",
                PolicyDocument=member_policy(account),
            )
            for name in ("AIAgentRole", "Deployer"):
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
                iam.put_role_policy(RoleName=name, PolicyName="Work", PolicyDocument=_ALLOW_ALL)
        aws._post("/moto-api/reset-auth", "0")  # from here on IAM decides, in every account
        for account in accounts.values():
            members.agents[account] = members.session_as(f"arn:aws:iam::{account}:role/AIAgentRole")
        yield members


@dataclass
class Central:
    runtime: Runtime
    recorder: CallRecorder
    handler: Any

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.recorder.start()
        return invoke(self.handler, event)

    def operations(self) -> list[str]:
        return [f"{c['service']}:{c['operation']}" for c in self.recorder.calls]


@pytest.fixture
def central(organization: Organization) -> Iterator[Central]:
    session = organization.aws.session()
    recorder = CallRecorder()
    recorder.attach(session)
    runtime = Runtime(
        settings=Settings.from_env(organization.settings_env()), aws=AwsClients(session=session)
    )
    use_runtime(runtime)
    yield Central(runtime, recorder, load_handler())
    use_runtime(None)


def _deny_all_on(session: boto3.session.Session, role: str) -> bool:
    try:
        session.client("iam").get_role_policy(RoleName=role, PolicyName="GuardrailEmergencyDenyAll")
    except ClientError:
        return False
    return True


def test_an_event_from_a_member_is_contained_there_through_its_role(
    organization: Organization, central: Central
) -> None:
    prod = organization.production
    agent = organization.agents[prod]
    assert not agent_is_denied(agent)

    outcome = central(in_account(load_event("rules/dynamodb.table-deleted.json"), prod))

    assert (outcome["status"], outcome["account"], outcome["environment"]) == (
        "contained",
        prod,
        "production",
    )
    # The central account assumed the member's role; the IAM writes went to the member's IAM with it.
    assert "sts:AssumeRole" in central.operations()
    assert not [op for op in central.operations() if op.startswith("iam:")]
    first = outcome["actions"][0]
    assert (first["action"], first["target"]) == (
        "put_role_deny_all",
        f"arn:aws:iam::{prod}:role/AIAgentRole",
    )
    assert first["request_ids"]
    assert agent_is_denied(agent)  # the agent's own session, in its own account
    deployer = organization.session_as(f"arn:aws:iam::{prod}:role/Deployer")  # may read IAM there
    assert _deny_all_on(deployer, "AIAgentRole")
    # Containment happened in the member account only.
    assert not agent_is_denied(organization.agents[organization.development])

    released = release(
        f"arn:aws:iam::{prod}:role/AIAgentRole",
        "INC-7: cleanup approved",
        "oncall@example.com",
        central.runtime,
    )
    assert released.status.value == "released"
    assert not agent_is_denied(agent)


def test_the_environment_comes_from_the_member_accounts_tag(
    organization: Organization, central: Central
) -> None:
    dev = organization.development
    directory = central.runtime.directory()
    real, asked = directory.client, []

    class Counting:
        """The Organizations client, counting what it is asked."""

        def __init__(self, client: Any) -> None:
            self.client = client

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.client, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                asked.append(name)
                return method(*args, **kwargs)

            return call

    directory.client = lambda: Counting(real())
    outcome = central(in_account(load_event("rules/s3.bucket-deleted.json"), dev))
    assert (outcome["environment"], outcome["decision"], outcome["status"]) == (
        "development",
        "notify",
        "reported",
    )
    assert not agent_is_denied(organization.agents[dev])
    # Asked once per account, then cached.
    assert asked.count("list_tags_for_resource") == 1
    central(in_account(load_event("rules/s3.bucket-deleted.json"), dev))
    assert asked.count("list_tags_for_resource") == 1


def test_a_forged_event_is_refused_and_kept(organization: Organization, central: Central) -> None:
    event = in_account(load_event("rules/dynamodb.table-deleted.json"), organization.production)
    event["account"] = organization.development  # put on the bus by development, naming production
    outcome = central(event)
    assert outcome["status"] == "refused"
    assert "refused as forged" in outcome["error"]
    assert central.operations() == ["sqs:SendMessage"]  # kept in quarantine, nothing else
    assert not agent_is_denied(organization.agents[organization.production])


def test_an_event_naming_an_account_outside_the_organization_is_refused(
    organization: Organization, central: Central
) -> None:
    outcome = central(in_account(load_event("rules/dynamodb.table-deleted.json"), "444455556666"))
    assert outcome["status"] == "refused"
    assert "444455556666 is not a member" in outcome["error"]
    operations = central.operations()
    assert "sts:AssumeRole" not in operations
    assert not [op for op in operations if op.startswith("iam:")]
    assert operations[-1] == "sqs:SendMessage"
    body = json.loads(
        organization.aws.session()
        .client("sqs")
        .receive_message(QueueUrl=organization.aws.settings_env["GUARDRAIL_QUARANTINE_QUEUE_URL"])[
            "Messages"
        ][0]["Body"]
    )
    assert "not a member" in body["reason"]


def test_the_member_role_may_contain_agents_and_nothing_else(organization: Organization) -> None:
    prod = organization.production
    member = organization.session_as(f"arn:aws:iam::{prod}:role/GuardrailContainment", EXTERNAL_ID).client(
        "iam"
    )
    deny = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    )
    member.put_role_policy(
        RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll", PolicyDocument=deny
    )
    member.delete_role_policy(RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll")
    for role in ("Deployer", "GuardrailContainment"):
        with pytest.raises(ClientError) as refused:
            member.put_role_policy(RoleName=role, PolicyName="GuardrailEmergencyDenyAll", PolicyDocument=deny)
        assert refused.value.response["Error"]["Code"] == "AccessDenied", role
    with pytest.raises(ClientError):
        member.create_user(UserName="backdoor")


def test_a_central_responder_needs_its_members_named(organization: Organization) -> None:
    env = organization.settings_env()
    del env["GUARDRAIL_ORGANIZATION_ID"]
    with pytest.raises(Exception, match="no member is named"):
        Settings.from_env(env)
    env["GUARDRAIL_MEMBER_ACCOUNTS"] = organization.production
    env["GUARDRAIL_MEMBER_EXTERNAL_ID"] = "short"
    with pytest.raises(Exception, match="at least 16"):
        Settings.from_env(env)


def test_a_member_role_that_cannot_be_assumed_is_a_loud_containment_failure(
    organization: Organization, central: Central
) -> None:
    """STS refusing (member.yaml missing, or trusting an old role ARN): moto assumes any role, so STS is
    replaced by one that refuses, as AWS would."""
    from guardrail.respond.containment import ContainmentFailed  # noqa: PLC0415

    class RefusingSts:
        def assume_role(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not trusted"}}, "AssumeRole")

    members = central.runtime.members()
    assert members is not None
    members.sts = RefusingSts
    with pytest.raises(ContainmentFailed, match="could not assume arn:aws:iam::.*:role/GuardrailContainment"):
        central(in_account(load_event("rules/dynamodb.table-deleted.json"), organization.production))
    (incident,) = central.runtime.store.records.incidents()
    assert incident.status.value == "failed"
    (message,) = organization.aws.published()
    assert message["status"] == "failed"
    assert "could not assume" in message["containment"]["error"]
