"""The backtest report as one self-contained HTML page: inline CSS and SVG, no script, no network, so it
opens from a laptop, an S3 bucket or an email attachment alike. Pure: it renders the JSON report
(operate/backtest.py's Backtest.to_dict) and nothing else.

Every value comes from the trail, and a trail is written by whoever made the calls (an agent chooses its
session name, a bucket name, a user agent): all of it is escaped for HTML, attributes included.
"""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 900, 90, 28
_COLOURS = {"contained": "#b3261e", "dry_run": "#b3261e", "not_containable": "#7a4b00", "reported": "#e08a00"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;
color:#1d1d1f;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
.sub{color:#555}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem;min-width:130px}
.card b{display:block;font-size:1.5rem}.bad b{color:#b3261e}.warn b{color:#e08a00}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f6f6}
code{font:12px ui-monospace,Menlo,monospace;word-break:break-all}
.timeline{margin:.8rem 0 1.2rem}.timeline svg{border:1px solid #eee;border-radius:6px;background:#fcfcfc}
.legend span{display:inline-block;margin-right:1rem}.dot{display:inline-block;width:10px;height:10px;
border-radius:50%;margin-right:.3rem;vertical-align:middle}.none{color:#777;font-style:italic}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def render_html(report: dict[str, Any]) -> str:
    contained = report.get("would_contain") or []
    reported = report.get("would_report") or []
    humans = report.get("critical_non_agents") or []
    unreadable = sum(u["records"] for u in report.get("unreadable") or [])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<title>Guardrail Responder backtest</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>What the responder would have done</h1>",
        f"<p class='sub'>{_e(report.get('events', 0))} events in {_e(report.get('files', 0))} "
        f"file{'' if report.get('files') == 1 else 's'}, "
        f"{_e(report.get('first_event') or '?')} to {_e(report.get('last_event') or '?')}. "
        "Nothing was changed: a backtest only reads.</p>",
        "<div class='cards'>",
        _card("would contain", len(contained), "bad"),
        _card("would report", len(reported), "warn"),
        _card("not containable", len(report.get("not_containable") or []), ""),
        _card("agents seen", len(report.get("agents") or []), ""),
        _card("critical calls by non-agents", sum(h["calls"] for h in humans), "warn" if humans else ""),
        _card("unreadable records", unreadable, "warn" if unreadable else ""),
        "</div>",
        "<h2>Would contain</h2>",
        _incidents(contained, with_before=True),
        "<h2>Timelines</h2>",
        "<p class='legend'><span><i class='dot' style='background:#b3261e'></i>containment</span>"
        "<span><i class='dot' style='background:#e08a00'></i>report</span>"
        "<span><i class='dot' style='background:#7a4b00'></i>not containable</span> "
        "events per minute, one line per principal</p>",
        *(_timeline(t) for t in report.get("timelines") or []),
        "<h2>Would report</h2>",
        _incidents(reported, with_before=False),
        "<h2>Principals matching the agent patterns</h2>",
        "<p class='sub'>Check the patterns catch your agents, and only them.</p>",
        _table(
            ["principal", "events"],
            [[_code(a["principal"]), _e(a["events"])] for a in report.get("agents") or []],
        ),
        "<h2>Critical calls by principals that are not agents</h2>",
        "<p class='sub'>Humans and pipelines doing destructive things: never contained, worth knowing.</p>",
        _table(
            ["principal", "calls", "by call"],
            [
                [
                    _code(h["principal"]),
                    _e(h["calls"]),
                    _e(", ".join(f"{k} x{v}" for k, v in h["by_event_name"].items())),
                ]
                for h in humans[:50]
            ],
        ),
        "<h2>Busiest rules</h2>",
        _table(
            ["rule", "events"],
            [[_code(r["rule"]), _e(r["events"])] for r in report.get("busiest_rules") or []],
        ),
        "<h2>Outcomes</h2>",
        _table(["outcome", "events"], [[_e(k), _e(v)] for k, v in (report.get("outcomes") or {}).items()]),
        "<h2>Unreadable records</h2>",
        _table(
            ["reason", "records"],
            [[_e(u["reason"]), _e(u["records"])] for u in report.get("unreadable") or []],
        ),
        "<h2>Settings used</h2>",
        _table(
            ["setting", "value"], [[_code(k), _code(v)] for k, v in (report.get("settings") or {}).items()]
        ),
        "</body></html>\n",
    ]
    return "".join(parts)


def _card(label: str, value: object, kind: str) -> str:
    return f"<div class='card {kind}'><b>{_e(value)}</b>{_e(label)}</div>"


def _code(value: object) -> str:
    return f"<code>{_e(value)}</code>"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p class='none'>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _incidents(incidents: list[dict[str, Any]], *, with_before: bool) -> str:
    rows = []
    for i in incidents:
        why = ", ".join(i.get("thresholds") or []) or ", ".join(i.get("rules") or []) or "-"
        cells = [
            _e(i["time"]),
            _code(i["principal"]),
            _code(i["event_name"]),
            _e(why),
            _e(i.get("joined", 0)),
        ]
        if with_before:
            before = "<br>".join(
                f"{_e(b['time'][11:19])} {_code(b['event_name'])} {_e(b['status'])}"
                for b in i.get("before") or []
            )
            cells.append(before or "-")
        rows.append(cells)
    headers = ["when", "principal", "call", "by (rule or threshold)", "later events joined"]
    return _table(headers + (["just before"] if with_before else []), rows)


def _timeline(timeline: dict[str, Any]) -> str:
    points = timeline.get("per_minute") or []
    markers = timeline.get("markers") or []
    minutes = [m for m, _ in points] + [mk["minute"] for mk in markers]
    if not minutes:
        return ""
    first, last = min(minutes), max(minutes)
    span = max(1, last - first)
    top = max([c for _, c in points] or [1])

    def x(minute: int) -> float:
        return float(PAD + (WIDTH - 2 * PAD) * (minute - first) / span)

    def y(count: int) -> float:
        return float(HEIGHT - PAD + 8 - (HEIGHT - PAD) * count / top)

    bars = "".join(
        f"<line x1='{x(m):.1f}' y1='{HEIGHT - PAD + 8}' x2='{x(m):.1f}' y2='{y(c):.1f}' stroke='#4a6fa5' "
        f"stroke-width='2'><title>{c} events at minute {m}</title></line>"
        for m, c in points
    )
    marks = "".join(
        f"<circle cx='{x(mk['minute']):.1f}' cy='14' r='6' fill='{_COLOURS.get(mk['status'], '#555')}'>"
        f"<title>{_e(mk['status'])} {_e(mk['incident'])} at {_e(mk['time'])}</title></circle>"
        f"<line x1='{x(mk['minute']):.1f}' y1='20' x2='{x(mk['minute']):.1f}' y2='{HEIGHT - PAD + 8}' "
        f"stroke='{_COLOURS.get(mk['status'], '#555')}' stroke-dasharray='3,3'/>"
        for mk in markers
    )
    from datetime import UTC, datetime

    def label(minute: int) -> str:
        return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M")

    axis = (
        f"<text x='{PAD}' y='{HEIGHT - 4}' font-size='11' fill='#666'>{_e(label(first))}</text>"
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - 4}' font-size='11' fill='#666' text-anchor='end'>{_e(label(last))}</text>"
        f"<text x='{WIDTH - PAD}' y='{PAD - 6}' font-size='11' fill='#666' text-anchor='end'>max {top}/min</text>"
    )
    return (
        f"<div class='timeline'><div>{_code(timeline['principal'])}</div>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT + 8}' role='img' "
        f"aria-label='events per minute of {_e(timeline['principal'])}'>{bars}{marks}{axis}</svg></div>"
    )
