"""Backtest beyond one machine: the SQL that asks Athena's CloudTrail table for what routing would deliver,
and the query's result read back as CloudTrail records.

A year of an organization's trail is too much to stream through one process; Athena scans it in parallel
and returns only the records the responder would ever have seen. The query is translated from the
EventBridge patterns themselves (`detect/routing.py:all_patterns`, which template.yaml's rules are), not
written beside them, so the two cannot drift: every matcher the generator emits has one SQL form here,
and a pattern using anything else is refused with its name.

The table is the one AWS documents for CloudTrail ("Create a table for CloudTrail logs in Athena"):
lower-case column names, `useridentity` and `resources` as structs, `requestparameters`,
`responseelements` and `additionaleventdata` as JSON text, `readonly` as text. The query selects the
record's fields (the structs as JSON text, `json_format(CAST(... AS JSON))`), and `records_of` turns each
row of its result (Athena's CSV, or JSON lines from UNLOAD) back into the record CloudTrail wrote, field
names and all, for the same parser and decision path as a log file.

What the documented table leaves out, the result cannot bring back: `sessionContext.sourceIdentity` (the
principal's source identity) is not among its columns; a record whose `requestParameters` value is an
array is compared as Athena's json_extract_scalar sees it (not a scalar: no match), where EventBridge
would match any element (routing does not route by array paths: see routing.py).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.routing import OPTIONAL_RULES, all_patterns
from guardrail.errors import GuardrailError, InvalidEventError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from guardrail.detect.catalogue import Catalogue

DEFAULT_TABLE = "cloudtrail_logs"

# The record's top-level fields and their columns in the documented table.
TEXT_COLUMNS = {
    "eventVersion": "eventversion",
    "eventID": "eventid",
    "eventTime": "eventtime",
    "eventSource": "eventsource",
    "eventName": "eventname",
    "awsRegion": "awsregion",
    "sourceIPAddress": "sourceipaddress",
    "userAgent": "useragent",
    "errorCode": "errorcode",
    "errorMessage": "errormessage",
    "requestID": "requestid",
    "eventType": "eventtype",
    "recipientAccountId": "recipientaccountid",
    "readOnly": "readonly",
}
# Fields the table keeps as JSON text.
JSON_COLUMNS = {
    "requestParameters": "requestparameters",
    "responseElements": "responseelements",
    "additionalEventData": "additionaleventdata",
}
# Fields the table keeps as structs: selected as JSON text, their keys lower-cased by Athena.
STRUCT_COLUMNS = {"userIdentity": "useridentity", "resources": "resources"}
# CloudTrail's own spelling of the struct fields the table lower-cases.
CLOUDTRAIL_KEYS = {
    k.lower(): k
    for k in [
        "type",
        "principalId",
        "arn",
        "accountId",
        "invokedBy",
        "accessKeyId",
        "userName",
        "onBehalfOf",
        "userId",
        "identityStoreArn",
        "sessionContext",
        "attributes",
        "mfaAuthenticated",
        "creationDate",
        "sessionIssuer",
        "ec2RoleDelivery",
        "webIdFederationData",
        "federatedProvider",
        "sourceIdentity",
        "credentialId",
    ]
} | {"arn": "arn"}
RESOURCE_KEYS = {"arn": "ARN", "accountid": "accountId", "type": "type"}
# EventBridge's detail-types for calls, as the table's eventtype (lower-cased: older sign-in records spell
# it AwsConsoleSignin). An API call is any other eventtype, or none, as the reader of a log file takes it
# (cloudtrail.py: AwsVpceEvent and what CloudTrail adds later are calls); Insights are not.
EVENT_TYPES = {
    "AWS Console Action via CloudTrail": "awsconsoleaction",
    "AWS Console Sign In via CloudTrail": "awsconsolesignin",
    "AWS Service Event via CloudTrail": "awsserviceevent",
}
API_CALL = "AWS API Call via CloudTrail"
NOT_CALLS = ("awscloudtrailinsight",)


def _detail_types(detail_types: list[str]) -> str:
    unknown = set(detail_types) - {API_CALL, *EVENT_TYPES}
    if unknown:
        raise Untranslatable(f"detail-types {sorted(unknown)}")
    others = sorted(EVENT_TYPES[t] for t in detail_types if t != API_CALL)
    if API_CALL not in detail_types:
        return f"lower(eventtype) IN ({', '.join(_literal(t) for t in others)})"
    excluded = [*NOT_CALLS, *(t for t in sorted(EVENT_TYPES.values()) if t not in others)]
    return f"(eventtype IS NULL OR lower(eventtype) NOT IN ({', '.join(_literal(t) for t in excluded)}))"


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _like(glob: str) -> str:
    """An EventBridge wildcard (* for any run of characters) as a LIKE pattern, escaped with '\\'."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _literal(escaped.replace("*", "%")) + " ESCAPE '\\'"


class Untranslatable(GuardrailError):
    """A pattern uses a matcher this translation does not know: the SQL would not select what it routes."""


def _field(path: list[str]) -> tuple[str, str]:
    """(SQL expression, kind) for a field of the record's detail: kind is 'text' (a varchar column, or a
    scalar read from JSON text) or 'struct' (a struct field)."""
    head, rest = path[0], path[1:]
    if head in TEXT_COLUMNS and not rest:
        return TEXT_COLUMNS[head], "text"
    if head in JSON_COLUMNS and rest:
        json_path = "$" + "".join(f".{p}" if _IDENTIFIER.match(p) else f'["{_json_key(p)}"]' for p in rest)
        return f"json_extract_scalar({JSON_COLUMNS[head]}, {_literal(json_path)})", "json"
    if head == "userIdentity" and rest and all(_IDENTIFIER.match(p) for p in rest):
        return ".".join(["useridentity", *(p.lower() for p in rest)]), "text"
    raise Untranslatable(f"no column of the CloudTrail table holds {'.'.join(path)}")


def _json_key(key: str) -> str:
    if '"' in key or "\\" in key:
        raise Untranslatable(f"a requestParameters key {key!r} no JSON path can name")
    return key


def _exists(path: list[str], expression: str, kind: str) -> str:
    if kind == "json":
        # A key whose value is an object or array has no scalar: ask for the value itself.
        head, rest = path[0], path[1:]
        json_path = "$" + "".join(f".{p}" if _IDENTIFIER.match(p) else f'["{_json_key(p)}"]' for p in rest)
        return f"json_extract({JSON_COLUMNS[head]}, {_literal(json_path)}) IS NOT NULL"
    return f"{expression} IS NOT NULL"


def _matcher(path: list[str], matcher: Any) -> str:
    expression, kind = _field(path)
    if isinstance(matcher, bool):
        return f"lower({expression}) = {_literal(str(matcher).lower())}"
    if isinstance(matcher, int | float):
        return f"{expression} = {_literal(str(matcher))}"
    if isinstance(matcher, str):
        return f"{expression} = {_literal(matcher)}"
    if isinstance(matcher, dict) and len(matcher) == 1:
        ((operator, operand),) = matcher.items()
        if operator == "prefix" and isinstance(operand, str):
            return f"starts_with({expression}, {_literal(operand)})"
        if operator == "wildcard" and isinstance(operand, str):
            return f"{expression} LIKE {_like(operand)}"
        if operator == "equals-ignore-case" and isinstance(operand, str):
            return f"lower({expression}) = {_literal(operand.lower())}"
        if operator == "exists" and isinstance(operand, bool):
            present = _exists(path, expression, kind)
            return present if operand else present.replace(" IS NOT NULL", " IS NULL")
    raise Untranslatable(f"the matcher {json.dumps(matcher)} on {'.'.join(path)}")


def _condition(detail: Mapping[str, Any], path: list[str]) -> str:
    """The SQL for a pattern's object: every key must match (AND); $or lists alternatives."""
    parts: list[str] = []
    for key, value in detail.items():
        if key == "$or":
            parts.append(_any(f"({_condition(entry, path)})" for entry in value))
        elif isinstance(value, dict):
            parts.append(_condition(value, [*path, key]))
        elif isinstance(value, list):
            parts.append(_any(_matcher([*path, key], m) for m in value))
        else:
            raise Untranslatable(f"{'.'.join([*path, key])}: {json.dumps(value)}")
    return " AND ".join(parts) if parts else "TRUE"


def _any(conditions: Iterable[str]) -> str:
    """Alternatives, each once (a boolean's two matchers, true and "true", read alike as text)."""
    unique = list(dict.fromkeys(conditions))
    return unique[0] if len(unique) == 1 else "(" + " OR ".join(unique) + ")"


def pattern_condition(pattern: Mapping[str, Any]) -> str:
    """One EventBridge pattern of CloudTrail records as a SQL condition on the table."""
    unknown = set(pattern) - {"source", "detail-type", "detail"}
    if unknown:
        raise Untranslatable(f"pattern keys {sorted(unknown)}")
    parts = []
    detail_types = pattern.get("detail-type")
    if detail_types is not None:
        parts.append(_detail_types(detail_types))
    # `source` (aws.*) keeps forged events off the bus; every row of the table CloudTrail wrote itself.
    parts.append(_condition(pattern.get("detail", {}), []))
    return " AND ".join(parts)


def athena_sql(
    catalogue: Catalogue | None = None,
    *,
    table: str = DEFAULT_TABLE,
    since: date | None = None,
    until: date | None = None,
    accounts: frozenset[str] = frozenset(),
    regions: frozenset[str] = frozenset(),
    agent_writes: bool = False,
) -> str:
    """The query for the records template.yaml's rules would deliver (AgentWrites only with
    `agent_writes`, as the RouteAgentWrites parameter turns it on), within the selection."""
    if not _TABLE.match(table):
        raise GuardrailError(f"{table!r} is not a table name ([catalog.][database.]table)")
    patterns = all_patterns(catalogue or default_catalogue())
    routes = {n: p for n, p in patterns.items() if agent_writes or n not in OPTIONAL_RULES}
    selection = []
    if since is not None:
        selection.append(f"eventtime >= {_literal(since.isoformat() + 'T00:00:00Z')}")
    if until is not None:
        selection.append(f"eventtime < {_literal((until + timedelta(days=1)).isoformat() + 'T00:00:00Z')}")
    if accounts:
        selection.append(f"recipientaccountid IN ({', '.join(_literal(a) for a in sorted(accounts))})")
    if regions:
        selection.append(f"awsregion IN ({', '.join(_literal(r) for r in sorted(regions))})")
    columns = [
        *(f"{c} AS {c}" for c in TEXT_COLUMNS.values()),
        *(f"{c} AS {c}" for c in JSON_COLUMNS.values()),
        *(f"json_format(CAST({c} AS JSON)) AS {c}" for c in STRUCT_COLUMNS.values()),
    ]
    routed = "\n   OR ".join(f"-- {name}\n      ({pattern_condition(p)})" for name, p in routes.items())
    where = "\n  AND ".join([*selection, f"(\n      {routed.lstrip()}\n  )"])
    return (
        "-- generated by `guardrail backtest --athena-sql` from the responder's routing patterns:\n"
        "-- the records template.yaml's EventBridge rules would deliver. Run it in Athena (engine v3),\n"
        "-- download the result (CSV), and give it to `guardrail backtest RESULT.csv`.\n"
        f"SELECT {', '.join(columns)}\nFROM {table}\nWHERE {where}\n"
    )


# --- reading a result back --------------------------------------------------------------------------

RESULT_SUFFIXES = (".csv", ".csv.gz")


def is_result(name: str, text: str) -> bool:
    """Whether a file is a query result of `athena_sql` (CSV, or JSON lines from UNLOAD) rather than
    CloudTrail's own records: its first row names the table's columns."""
    if name.endswith(RESULT_SUFFIXES):
        return True
    first = text.lstrip()[:4096]
    return first.startswith("{") and '"eventsource"' in first and '"eventSource"' not in first


def records_of(name: str, text: str) -> Iterator[tuple[str, object]]:
    """(location, CloudTrail record) for every row of a result; a row that cannot be a record stands as
    an InvalidEventError, saying why."""
    rows: Iterator[tuple[int, object]]
    if name.endswith(RESULT_SUFFIXES):
        rows = enumerate(csv.DictReader(io.StringIO(text)), start=2)
    else:
        rows = ((n, _json_row(line)) for n, line in enumerate(text.splitlines(), start=1) if line.strip())
    for number, row in rows:
        where = f"{name}:{number}"
        try:
            if isinstance(row, InvalidEventError):
                raise row
            yield where, record_of(row)
        except InvalidEventError as exc:
            yield where, InvalidEventError(f"{where}: {exc}")


def _json_row(line: str) -> object:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        return InvalidEventError(f"not JSON ({str(exc)[:120]})")


def record_of(row: object) -> dict[str, Any]:
    """One result row as the record CloudTrail wrote. Athena writes NULL as an empty field in CSV: an
    empty value is a field the record did not have."""
    if not isinstance(row, dict):
        raise InvalidEventError(f"a result row is an object of columns, not {type(row).__name__}")
    if "eventsource" not in row or "eventname" not in row:
        raise InvalidEventError("not a row of `guardrail backtest --athena-sql`: no eventsource, eventname")
    record: dict[str, Any] = {}
    for field, column in TEXT_COLUMNS.items():
        value = row.get(column)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidEventError(f"{column} is {type(value).__name__}, expected text")
        record[field] = value
    if "readOnly" in record:
        read_only = record["readOnly"].lower()
        record["readOnly"] = (
            True if read_only == "true" else False if read_only == "false" else record["readOnly"]
        )
    for field, column in {**JSON_COLUMNS, **STRUCT_COLUMNS}.items():
        value = row.get(column)
        if value is None or value == "":
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise InvalidEventError(f"{column} is not JSON") from None
        if value is None:
            continue
        if field == "userIdentity":
            value = _recased(value, CLOUDTRAIL_KEYS)
        elif field == "resources":
            value = [_recased(r, RESOURCE_KEYS) for r in value] if isinstance(value, list) else value
        record[field] = value
    return record


def _recased(value: object, keys: dict[str, str]) -> object:
    """A struct as CloudTrail spells it: Athena lower-cases field names, and drops none of the NULLs the
    struct declares (a field CloudTrail left out comes back null, and is left out again)."""
    if not isinstance(value, dict):
        return value
    return {keys.get(k, k): _recased(v, keys) for k, v in value.items() if v is not None}
