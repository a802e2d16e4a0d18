"""CloudTrail log files read fast, for the operator's tools that read months of them (`guardrail backtest`,
`guardrail classify`): msgspec decodes each record straight into typed structs that hold only what the
decision reads, at about a third of pydantic's cost and less than json.loads's (benchmarks/
backtest_throughput.py: issue 18 asks for at most twice the standard library's own parse and summary).

The structs are not a second model of the record: they are generated from `detect/cloudtrail.py`'s
pydantic models (field names, JSON names, types, length limits), so the two cannot drift. msgspec is
stricter than pydantic's lax mode (no "true" for a boolean, no time that is not RFC 3339): a record it
refuses is handed to `parse_event` as decoded JSON, so every record gives the same call, or the same
error, on either path (tests/unit/test_cloudtrail.py holds them together on every record we have).

msgspec (BSD-3-Clause, jcrist/msgspec) comes with the `cli` extra; the Lambda layer never reads a log file
and does not ship it.
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import msgspec
from pydantic import BaseModel

from guardrail.detect.cloudtrail import (
    CloudTrailRecord,
    api_call_of,
    collector_paused,
    decoded,
    documents_of,
    gunzipped,
    kind_of_event_type,
)
from guardrail.errors import InvalidEventError

if TYPE_CHECKING:
    from collections.abc import Callable


def _struct_of(model: type[BaseModel], structs: dict[type[BaseModel], Any], **extra: Any) -> Any:
    """A msgspec Struct with `model`'s fields: the same attribute names (api_call_of reads them), the same
    JSON names, the same types and limits. `extra`: fields to override, as (type, default)."""
    if model in structs:
        return structs[model]
    fields: list[tuple[str, Any, Any]] = []
    renames: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if name in extra:
            continue
        kind = _type_of(info.annotation, info.metadata, structs)
        renames[name] = info.alias or name
        if info.is_required():
            fields.append((name, kind, msgspec.NODEFAULT))
        else:
            fields.append((name, kind, info.default))
    for name, (kind, default) in extra.items():
        known = model.model_fields.get(name)
        renames[name] = (known.alias if known else None) or name.replace("_", "-")
        fields.append((name, kind, default))
    # Required fields first, as a Python signature needs.
    fields.sort(key=lambda f: f[2] is not msgspec.NODEFAULT)
    struct = msgspec.defstruct(
        f"Fast{model.__name__}",
        [(n, k) if d is msgspec.NODEFAULT else (n, k, d) for n, k, d in fields],
        rename=renames,
        frozen=True,
    )
    structs[model] = struct
    return struct


def _type_of(annotation: Any, metadata: list[Any], structs: dict[type[BaseModel], Any]) -> Any:
    limits = {k: getattr(m, k) for m in metadata for k in ("min_length", "max_length") if hasattr(m, k)}
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        # A time that is not one (`datetime | str`) is refused here and read by parse_event.
        if datetime in members and str in members:
            members.remove(str)
        inner = [_type_of(m, metadata, structs) for m in members]
        kind: Any = inner[0]
        for more in inner[1:]:
            kind = kind | more
        return kind | None if type(None) in typing.get_args(annotation) else kind
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _struct_of(annotation, structs)
    if annotation in (str, bool, datetime):
        kind = annotation
    elif origin is list:
        kind = list[Any]
    elif origin is dict:
        kind = dict[str, Any]
    elif annotation is Any or annotation is object:
        return Any
    else:
        raise TypeError(f"no msgspec type for {annotation!r}")
    return Annotated[kind, msgspec.Meta(**limits)] if limits else kind


_STRUCTS: dict[type[BaseModel], Any] = {}
# eventID required (without one the stand-in id is a hash of the record's JSON: parse_event's), and an
# envelope's keys caught (parse_event reads a document with one as an envelope).
Record = _struct_of(
    CloudTrailRecord,
    _STRUCTS,
    event_id=(Annotated[str, msgspec.Meta(min_length=1, max_length=256)], msgspec.NODEFAULT),
    detail=(Any, msgspec.UNSET),
    detail_type=(Any, msgspec.UNSET),
)


class LogFile(msgspec.Struct):
    Records: list[msgspec.Raw]


_LOG_FILE = msgspec.json.Decoder(LogFile)
_RECORD = msgspec.json.Decoder(Record)
# How CloudTrail writes every log file; anything else is read the slow way.
_LOG_FILE_START = re.compile(r'\s*\{\s*"Records"\s*:\s*\[')
_LOG_FILE_START_BYTES = re.compile(rb'\s*\{\s*"Records"\s*:\s*\[')


def documents(name: str, text: str) -> list[tuple[str, object]]:
    """(location, ApiCall, decoded JSON for parse_event, or the InvalidEventError it stands for) for every
    document of a file: a CloudTrail log file's records on the fast path, anything else as
    `cloudtrail.documents_of(parse=True)` reads it."""
    read = _log_file_records(name, text)
    return read[0] if read is not None else list(documents_of(name, text, parse=True))


def file_documents(
    name: str, raw: bytes, as_text: Callable[[str, str], list[tuple[str, object]]] = documents
) -> list[tuple[str, object]]:
    """documents() of a file's bytes (gunzipped if gzip): a CloudTrail log file's ASCII bytes on the fast
    path as they are, anything else as text, read by `as_text` (InvalidEventError if the file is not
    readable)."""
    return file_records(name, raw, as_text)[0]


def file_records(
    name: str, raw: bytes, as_text: Callable[[str, str], list[tuple[str, object]]] = documents
) -> tuple[list[tuple[str, object]], list[msgspec.Raw] | None]:
    """file_documents, with each record's own JSON, index for index, when the file took the fast path
    (None otherwise): `record_document` reads one of them again as the file's reading did. A backtest
    keeps these bytes (about a kilobyte) of a record it may need again, not the objects parsed from them."""
    plain = gunzipped(name, raw)
    read = log_file_records(name, plain)
    return read if read is not None else (as_text(name, decoded(name, plain)), None)


def log_file_records(name: str, plain: bytes) -> tuple[list[tuple[str, object]], list[msgspec.Raw]] | None:
    """documents() of a CloudTrail log file, with each record's own JSON, straight from its (gunzipped)
    bytes when they are ASCII: no text copy of a file's megabytes (measured: 23.9 -> 23.5 ms of a
    2,000-record file's parse, and 2.4 MB less memory per file). None: read the file as text (text_of,
    documents), which says what is wrong if it is not UTF-8; ASCII is UTF-8, so either way gives the same
    documents."""
    if not plain.isascii() or not _LOG_FILE_START_BYTES.match(plain):
        return None
    return _log_file_records(name, plain)


def _log_file_records(
    name: str, text: str | bytes
) -> tuple[list[tuple[str, object]], list[msgspec.Raw]] | None:
    if isinstance(text, str) and not _LOG_FILE_START.match(text):
        return None
    with collector_paused():
        try:
            log = _LOG_FILE.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return None  # not JSON msgspec reads whole: the slow path says what is wrong, where
        records = log.Records
        return [
            (where := f"{name}#Records[{i}]", record_document(where, raw)) for i, raw in enumerate(records)
        ], records


def record_document(where: str, raw: msgspec.Raw | bytes | memoryview) -> object:
    """One record of a log file, as documents() gives it: its ApiCall, the decoded JSON msgspec did not
    take (for parse_event, which says what is wrong), or the InvalidEventError it stands for."""
    try:
        record = _RECORD.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return _decoded(raw)
    if record.detail is not msgspec.UNSET or record.detail_type is not msgspec.UNSET:
        return _decoded(raw)
    kind = kind_of_event_type(record.event_type)
    try:
        # The struct has the model's attributes, by construction: api_call_of reads it as the model.
        return api_call_of(cast("CloudTrailRecord", record), None, kind)
    except InvalidEventError as exc:
        return exc


def _decoded(raw: msgspec.Raw | bytes | memoryview) -> object:
    """A record msgspec does not take, as json.loads reads it, for parse_event (which says what is wrong)."""
    try:
        return json.loads(bytes(raw))
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        return InvalidEventError(f"not JSON ({str(exc)[:120]})")
