"""Settings: one typed object, every problem reported at once, naming the variable."""

from __future__ import annotations

import pytest

from guardrail.errors import ConfigurationError
from guardrail.model import Environment, Severity
from guardrail.settings import ContainmentMode, Settings


def test_defaults_are_safe() -> None:
    settings = Settings.from_env({})
    assert settings.contain_at is Severity.HIGH
    assert settings.containment_mode is ContainmentMode.DENY_ALL
    assert settings.dry_run is False
    assert settings.environment_of("999999999999") is Environment.PRODUCTION
    assert settings.agent_principals.matches("arn:aws:sts::1:assumed-role/AIAgentRole/s")
    assert not settings.protected_principals.matches("arn:aws:iam::1:role/AIAgentRole")


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "GUARDRAIL_AGENT_PRINCIPALS": " arn:aws:iam::*:role/Bot* , arn:aws:iam::*:user/bot ",
            "GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/BotBreakGlass",
            "GUARDRAIL_CONTAIN_AT": "CRITICAL",
            "GUARDRAIL_CONTAINMENT_ACTION": "both",
            "GUARDRAIL_DRY_RUN": "true",
            "GUARDRAIL_ACCOUNT_ENVIRONMENTS": '{"111122223333": "Staging"}',
            "GUARDRAIL_TOPIC_ARN": "arn:aws:sns:us-east-1:111122223333:t",
            "GUARDRAIL_STATE_TABLE": "state",
        }
    )
    assert settings.agent_principals.patterns == ("arn:aws:iam::*:role/Bot*", "arn:aws:iam::*:user/bot")
    assert settings.protected_principals.matches("arn:aws:iam::1:role/BotBreakGlass")
    assert settings.contain_at is Severity.CRITICAL
    assert settings.containment_mode is ContainmentMode.BOTH
    assert settings.dry_run is True
    assert settings.environment_of("111122223333") is Environment.STAGING


def test_every_problem_is_reported_together() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                "GUARDRAIL_AGENT_PRINCIPALS": "AIAgentRole",
                "GUARDRAIL_CONTAIN_AT": "severe",
                "GUARDRAIL_CONTAINMENT_ACTION": "nuke",
                "GUARDRAIL_DRY_RUN": "maybe",
                "GUARDRAIL_ACCOUNT_ENVIRONMENTS": '{"12": "prod", "111122223333": "qa"}',
                "GUARDRAIL_TOPIC_ARN": "my-topic",
            }
        )
    message = str(info.value)
    for expected in (
        "GUARDRAIL_AGENT_PRINCIPALS: 'AIAgentRole' is not an ARN pattern",
        "GUARDRAIL_CONTAIN_AT: 'severe' is not one of info, low, medium, high, critical",
        "GUARDRAIL_CONTAINMENT_ACTION: 'nuke'",
        "GUARDRAIL_DRY_RUN: 'maybe' is not a boolean",
        "'12' is not a 12-digit account id",
        "111122223333: 'qa' is not one of sandbox, development, staging, production",
        "GUARDRAIL_TOPIC_ARN: 'my-topic' is not an SNS topic ARN",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GUARDRAIL_AGENT_PRINCIPALS": " , "}, "empty, so no principal would ever be contained"),
        ({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": "{nope"}, "GUARDRAIL_ACCOUNT_ENVIRONMENTS: not JSON"),
        ({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": "[1]"}, "expected a JSON object"),
        ({"GUARDRAIL_CONTAIN_AT": "low"}, "would contain agents for routine calls"),
    ],
)
def test_single_problems(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)
