"""The IAM policy simulator as an independent oracle for conditional denies.

moto ignores conditions on Deny statements, so a containment that rests on a condition (revoke older
sessions: `DateLessThan aws:TokenIssueTime`) cannot be proven on moto. `@cloud-copilot/iam-simulate`
(npm, pinned in tests/simulator/package.json, installed by `make setup` with `npm ci`) evaluates IAM
policies with their conditions offline. Licence: AGPL-3.0-or-later; it is a test-time tool, installed
unmodified into tests/simulator/node_modules, never shipped in the layer or vendored in this repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "evaluate.mjs"


def available() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        return "run `make setup` (npm ci in tests/simulator)"
    return None


def decide(requests: list[dict[str, Any]]) -> list[str]:
    """Each request ({principal, action, resource, accountId, context, policies}) to Allowed,
    ExplicitlyDenied or ImplicitlyDenied; one node process for all of them."""
    text = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run(
        ["node", str(SCRIPT)], input=text, capture_output=True, text=True, check=True, timeout=120
    )
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) == len(requests), done.stderr
    errors = [a["error"] for a in answers if "error" in a]
    assert not errors, errors
    return [str(a["result"]) for a in answers]
