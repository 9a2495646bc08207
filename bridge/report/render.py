"""The DPO report as one self-contained HTML file (pure: data and texts in, a string out).

Inline CSS and an inline SVG chart; no script, font, image or address of any kind, and a
Content-Security-Policy that forbids loading anything should a value ever slip through.
Every value that comes from outside (room names and IDs, user IDs, mail addresses,
reasons) goes through ``html.escape``.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from html import escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.report.chart import svg_chart
from bridge.report.model import CATEGORIES, POLICY_STATES, REASONS, VERDICTS, ReportData, RoomRow
from bridge.report.style import COLOURS, CSS
from bridge.report.text_port import TextPort

MS_PER_DAY = 86_400_000
UNVERIFIED_SHOWN = 50


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class _Page:
    def __init__(self, data: ReportData, text: TextPort, zone: tzinfo) -> None:
        self.d = data
        self.text = text
        self.lang = data.language if data.language in ("fr", "en") else "fr"
        self.zone = zone

    def t(self, key: str, **params: object) -> str:
        """A catalog text, escaped."""
        return escape(self.text.t(key, self.lang, **params))

    def when(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=self.zone)

    def verdict(self, verdict: str | None) -> str:
        key = verdict if verdict in VERDICTS else "none"
        return f'<span class="badge v-{key}">{self.t(f"report.verdict.{key}")}</span>'

    # -- page parts ----------------------------------------------------------------------

    def html(self) -> str:
        d = self.d
        generated = d.generated_at.astimezone(self.zone)
        title = f"{self.t('report.title')} — {escape(d.network)}"
        parts = [
            "<!DOCTYPE html>",
            f'<html lang="{escape(self.lang)}"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{title}</title><style>{CSS}</style></head><body>",
            '<header class="top"><div class="brand">SantéGuard</div>',
            f'<h1 id="title">{title}</h1>',
            f'<p class="meta">{self.t("report.network", network=d.network)} · '
            f"{self.t('report.generated', when=generated, zone=generated.tzname() or '')} · "
            f"{self.t('report.period', days=d.period_days)}</p></header><main>",
            self.summary(),
            self.notices(),
            self.rooms(),
            self.legend(),
            self.decisions(),
            self.limits(),
            f"</main><footer>{self.t('report.footer')}</footer></body></html>",
        ]
        return "\n".join(p for p in parts if p)

    def summary(self) -> str:
        d = self.d
        protected = [r for r in d.rooms if r.protected]
        encrypted = sum(1 for r in protected if r.encrypted)
        verdicts = d.verdict_counts()
        alarm = sum(len(r.unverified_members) for r in protected)
        chain = d.chain
        if not chain.checked:
            chain_cls, chain_val = "warn", self.t("report.chain.short_unchecked")
        elif chain.ok:
            chain_cls, chain_val = "good", self.t("report.chain.short_ok")
        else:
            chain_cls, chain_val = "bad", self.t("report.chain.short_broken")
        proof_cls = "bad" if verdicts["violations"] else "warn" if verdicts["cannot_prove"] else ""
        proof = " ".join(
            f'<span class="badge v-{k}">{n} {self.t(f"report.verdict.{k}")}</span>'
            for k, n in verdicts.items()
            if n
        )
        run = d.last_run
        last_run = self.verdict(run.verdict) if run and run.verdict else self.t("report.none")
        cards = [
            (
                "",
                "report.summary.rooms",
                str(len(d.rooms)),
                self.t("report.summary.protected", n=len(protected)),
            ),
            (
                "good" if encrypted == len(protected) else "bad",
                "report.summary.encrypted",
                self.t("report.summary.encrypted_value", n=encrypted, total=len(protected)),
                "",
            ),
            (proof_cls, "report.summary.proof", proof or self.t("report.none"), ""),
            ("bad" if alarm else "good", "report.summary.unverified", str(alarm), ""),
            (chain_cls, "report.summary.chain", chain_val, self.chain_text()),
            ("", "report.summary.last_run", last_run, self.run_text()),
        ]
        body = "".join(
            f'<div class="card {cls}"><div class="label">{self.t(label)}</div>'
            f'<div class="value">{value}</div><div class="sub">{sub}</div></div>'
            for cls, label, value, sub in cards
        )
        label = self.t("report.summary.title")
        return f'<section class="cards" id="summary" aria-label="{label}">{body}</section>'

    def chain_text(self) -> str:
        c = self.d.chain
        if not c.checked:
            return self.t("report.chain.unchecked")
        if c.ok:
            return self.t("report.chain.ok", entries=c.entries)
        if c.first_bad_seq is None:
            return self.t("report.chain.broken_somewhere", entries=c.entries)
        return self.t("report.chain.broken", seq=c.first_bad_seq, entries=c.entries)

    def run_text(self) -> str:
        run = self.d.last_run
        if run is None:
            return self.t("report.run.none")
        if run.finished_ms is None or run.verdict is None:
            return self.t("report.run.unfinished", id=run.run_id, when=self.when(run.started_ms))
        verdict = self.text.t(
            f"report.verdict.{run.verdict if run.verdict in VERDICTS else 'none'}", self.lang
        )
        return self.t(
            "report.run.done", id=run.run_id, when=self.when(run.finished_ms), verdict=verdict
        )

    def notices(self) -> str:
        d = self.d
        out = []
        if not d.homeserver_reached:
            out.append(self.t("report.homeserver.unreached"))
        elif d.rooms_not_reached:
            out.append(self.t("report.homeserver.partial", n=d.rooms_not_reached))
        return "".join(f'<div class="notice warn" role="note">{n}</div>' for n in out)

    def rooms(self) -> str:
        cols = (
            "room",
            "protection",
            "encryption",
            "retention",
            "proof",
            "verified",
            "unverified",
            "mailbox",
            "last_audit",
        )
        head = "".join(f'<th scope="col">{self.t(f"report.col.{c}")}</th>' for c in cols)
        if not self.d.rooms:
            body = f'<tr><td colspan="{len(cols)}">{self.t("report.rooms.empty")}</td></tr>'
        else:
            body = "".join(self.room(r) for r in self.d.rooms)
        bounds = ""
        if self.d.bounds_days:
            low, high = self.d.bounds_days
            bounds = (
                f'<p class="small">{self.t("report.bounds", low=f"{low:g}", high=f"{high:g}")}</p>'
            )
        return (
            f'<section id="rooms"><h2>{self.t("report.rooms.title")}</h2>{bounds}'
            f'<div class="scroll"><table class="rooms"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div></section>"
        )

    def room(self, r: RoomRow) -> str:
        unknown = self.t("report.unknown")
        none = self.t("report.none")
        name = f'<div class="name">{escape(r.name)}</div>' if r.name else ""
        badges = ""
        if r.admin_room:
            badges += f' <span class="badge b-admin">{self.t("report.admin_room")}</span>'
        if r.closed_ms is not None:
            closed = self.t("report.closed", when=self.when(r.closed_ms))
            badges += f' <span class="badge b-closed">{closed}</span>'
        room = f'{name}<div class="id">{escape(r.room_id)}</div>{badges}'
        protection = (
            f'<span class="badge b-prot">{self.t("report.protected")}</span>'
            if r.protected
            else f'<span class="badge b-open">{self.t("report.unprotected")}</span>'
        )
        if r.encrypted is None:
            encryption = unknown
        elif r.encrypted:
            encryption = f'<span class="badge b-enc">{self.t("report.encrypted")}</span>'
        else:
            cls = "b-clear" if r.protected else "b-open"
            encryption = f'<span class="badge {cls}">{self.t("report.clear")}</span>'
        retention = (
            self.t("report.days", n=f"{r.max_lifetime_ms / MS_PER_DAY:.4g}")
            if r.max_lifetime_ms is not None
            else (none if r.policy_state else unknown)
        )
        if r.policy_state in POLICY_STATES and r.policy_state != "ok":
            retention += (
                f' <span class="badge b-policy">{self.t(f"report.policy.{r.policy_state}")}</span>'
            )
        proof = self.verdict(r.proof)
        if r.proof == "violations" or r.present:
            evidence = self.t("report.evidence", present=r.present, evidence=r.evidence_count)
            proof += f'<div class="small">{evidence}</div>'
        elif r.proof == "proven" and r.checked:
            done = self.t("report.checked", checked=r.checked, purged=r.purged)
            proof += f'<div class="small">{done}</div>'
        if r.proof_reason:
            why = (
                self.text.t(f"report.why.{r.proof_reason}", self.lang)
                if r.proof_reason in REASONS
                else r.proof_reason
            )
            proof += f'<div class="small">{self.t("report.reason", reason=why)}</div>'
        verified = str(r.verified_members) if r.members_known else unknown
        unverified = unknown if not r.members_known else none
        if r.unverified_members:
            shown = r.unverified_members[:UNVERIFIED_SHOWN]
            items = "".join(f"<li>{escape(u)}</li>" for u in shown)
            more = len(r.unverified_members) - len(shown)
            if more:
                items += f"<li>{self.t('report.more', n=more)}</li>"
            cls = "users alarm" if r.protected else "users"
            unverified = f'<ul class="{cls}">{items}</ul>'
        mailbox = f'<span class="id">{escape(r.mailbox)}</span>' if r.mailbox else none
        audit = (
            self.t("report.date", when=self.when(r.last_audit_ms))
            if r.last_audit_ms is not None
            else none
        )
        cells = "".join(
            f'<td class="{cls}">{c}</td>'
            for cls, c in (
                ("who", room),
                ("prot", protection),
                ("enc", encryption),
                ("ret", retention),
                ("proof", proof),
            )
        )
        return (
            f'<tr class="room" data-room-id="{escape(r.room_id)}" '
            f'data-proof="{escape(r.proof or "none")}">{cells}'
            f'<td class="num">{verified}</td><td class="unv">{unverified}</td>'
            f'<td class="mail">{mailbox}</td><td class="when">{audit}</td></tr>'
        )

    def legend(self) -> str:
        rows = "".join(
            f"<dt>{self.verdict(v)}</dt><dd>{self.t(f'report.legend.{v}')}</dd>"
            for v in (*VERDICTS, "none")
        )
        return (
            f'<section id="legend"><h2>{self.t("report.legend.title")}</h2>'
            f'<dl class="verdicts">{rows}</dl>'
            f'<p class="small">{self.t("report.legend.unverified")}</p></section>'
        )

    def decisions(self) -> str:
        totals = self.d.totals()
        rows = "".join(
            f'<tr><td><span class="sw" style="background:{COLOURS[c]}"></span>'
            f'{self.t(f"report.category.{c}")}</td><td class="num">{totals.get(c, 0)}</td></tr>'
            for c in CATEGORIES
        )
        rows += (
            f'<tr><th scope="row">{self.t("report.total")}</th>'
            f'<td class="num"><strong>{sum(totals.values())}</strong></td></tr>'
        )
        legend = "".join(
            f'<span><span class="sw" style="background:{COLOURS[c]}"></span>'
            f"{self.t(f'report.category.{c}')}</span>"
            for c in CATEGORIES
        )
        return (
            f'<section id="decisions"><h2>{self.t("report.chart.title")}</h2>'
            f'<p class="small">{self.t("report.chart.note", days=self.d.period_days)}</p>'
            f'<div class="split"><figure class="chart" style="margin:0">{self.chart()}'
            f'<figcaption class="legend" id="chart-legend">{legend}</figcaption></figure>'
            f'<div><h2>{self.t("report.totals.title")}</h2><table class="totals"><thead><tr>'
            f'<th scope="col">{self.t("report.totals.category")}</th>'
            f'<th scope="col">{self.t("report.totals.count")}</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div></div></section>"
        )

    def chart(self) -> str:
        return svg_chart(self.d.decisions, self.text, self.lang)

    def limits(self) -> str:
        items = "".join(
            f"<li>{self.t(f'report.limits.{k}')}</li>"
            for k in ("devices", "exports", "forwarded", "encrypted")
        )
        return (
            f'<section id="limits"><h2>{self.t("report.limits.title")}</h2>'
            f"<p>{self.t('report.limits.intro')}</p><ul>{items}</ul>"
            f"<p><strong>{self.t('report.limits.cannot_prove')}</strong></p></section>"
        )


def render_html(data: ReportData, text: TextPort, *, timezone: str = "Europe/Paris") -> str:
    """The whole report, in ``data.language`` (French unless English was asked)."""
    return _Page(data, text, _zone(timezone)).html()
