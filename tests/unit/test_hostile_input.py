"""Property-based: whatever arrives, parsing and classification either work or raise InvalidEventError.

Never a bare KeyError, TypeError or RecursionError; never a verdict to contain from an invalid event.
(test_fuzz_handler.py holds the whole handler to it over 10,000 cases; this holds the parser and classifier.)
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.errors import InvalidEventError
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event

SETTINGS = Settings.from_env({})
SAMPLES = [load_event(str(p.relative_to(EVENTS))) for p in sorted(EVENTS.rglob("*.json"))]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
)  # fmt: skip
text_anything = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _outcome(event: object) -> None:
    try:
        call = parse_event(event)
    except InvalidEventError as exc:
        reason = str(exc)
    else:
        verdict = classify(call, SETTINGS)
        assert verdict.summary()["decision"] in {"ignore", "notify", "contain"}
        return
    assert reason  # says what is wrong


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_never_escapes_as_anything_but_invalid_event(event: object) -> None:
    _outcome(event)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def mutated(data: st.DataObject, actions: tuple[str, ...] = ("delete", "replace")) -> object:
    """A real sample with one to four fields deleted or replaced (by any JSON, null, or any unicode)."""
    event = copy.deepcopy(data.draw(st.sampled_from(SAMPLES)))
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _paths(event)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(actions))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "null":
            parent[path[-1]] = None
        elif action == "unicode":
            parent[path[-1]] = data.draw(text_anything)
        else:
            parent[path[-1]] = data.draw(json_values)
    return event


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_real_events_with_fields_deleted_retyped_or_nulled(data: st.DataObject) -> None:
    _outcome(mutated(data))


def test_deep_nesting_and_huge_values() -> None:
    deep: Any = "leaf"
    for _ in range(3000):
        deep = {"x": deep}
    for hostile in (
        {**SAMPLES[0], "detail": deep},
        {**SAMPLES[0], "detail": {**SAMPLES[0]["detail"], "requestParameters": deep}},
    ):
        _outcome(hostile)
    huge = copy.deepcopy(SAMPLES[0])
    huge["detail"]["userAgent"] = "\u0000\u202e" * 500_000
    _outcome(huge)
