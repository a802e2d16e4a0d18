"""A deployer's first hour, as the README tells it: one stack from dry run to live, each step a command
that exists and does what the README says, checked here where it can run (SAM itself, without AWS)."""

from __future__ import annotations

import json
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.template.test_template import _CfnLoader

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
README = (ROOT / "README.md").read_text()
DEPLOY = README.split("## Deploy", 1)[1].split("```sh", 1)[1].split("```", 1)[0]


def test_samconfig_is_one_stack_that_starts_in_dry_run() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert list(config) == ["version", "default"], "one configuration: dry run and live are one stack"
    assert config["default"]["global"]["parameters"]["stack_name"] == "guardrail-responder"
    assert config["default"]["deploy"]["parameters"]["parameter_overrides"] == 'DryRun="true"'


def test_the_readme_deploys_previews_and_goes_live_in_that_stack() -> None:
    lines = [line.split("#", 1)[0].strip() for line in DEPLOY.splitlines()]
    commands = [line for line in lines if line]
    assert commands == [
        "make setup && source .venv-sam/bin/activate",
        "sam build",
        "sam deploy --guided",
        ".venv/bin/guardrail preflight --stack guardrail-responder",
        "sam deploy --parameter-overrides DryRun=false --save-params",
    ]
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert "--stack-name guardrail-responder " in runbook
    assert "guardrail-responder-prod" not in README + runbook


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="make setup builds .venv-sam")
def test_going_live_keeps_every_other_answer() -> None:
    """SAM's own code, as `sam deploy --parameter-overrides DryRun=false` runs it on an existing stack:
    every parameter it is not given keeps its deployed value (CloudFormation UsePreviousValue)."""
    template: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    script = (
        "import json, sys\n"
        "from samcli.commands.deploy.deploy_context import DeployContext\n"
        "template = json.loads(sys.stdin.read())\n"
        "print(json.dumps(DeployContext.merge_parameters(template, {'DryRun': 'false'})))\n"
    )
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script],
        input=json.dumps({"Parameters": template["Parameters"]}),
        capture_output=True,
        text=True,
        check=True,
    )
    merged = {p["ParameterKey"]: p for p in json.loads(done.stdout)}
    assert merged.pop("DryRun") == {"ParameterKey": "DryRun", "ParameterValue": "false"}
    assert {"AgentRoleNames", "AgentUserNames", "ProtectedPrincipals", "AccountEnvironments"} <= set(merged)
    assert all(p == {"ParameterKey": k, "UsePreviousValue": True} for k, p in merged.items())


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="make setup builds .venv-sam")
def test_the_sam_flags_the_readme_uses_exist() -> None:
    done = subprocess.run(
        [str(ROOT / ".venv-sam" / "bin" / "sam"), "deploy", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
    )
    for flag in ("--guided", "--parameter-overrides", "--save-params"):
        assert flag in done.stdout


def test_make_setup_builds_every_tool_the_readme_relies_on() -> None:
    """`make -n` prints what `make setup` would run on a fresh clone, without running it."""
    done = subprocess.run(["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True, check=True)
    for step in ("-m venv .venv", "pip install", "aws-sam-cli", "checkov", "npm ci"):
        assert step in done.stdout, step
