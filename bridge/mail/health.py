"""The relay's health: certificate and connection problems, reported everywhere at once.

Each channel (``smtp``, ``imap``, ``certificate``) holds its current problem code or
None. A change is logged, counted in the metrics, posted to the admin room (once per
change, not per retry) and shown by ``/ready`` and ``!sg mail status``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge.core.ports import AlertPort
from bridge.mail.text import problem_code

log = logging.getLogger("santeguard.mail.health")

CHANNELS = ("smtp", "imap", "certificate")
# Told to the admins (alert, metrics, status) but mail still flows: SantéGuard stays ready.
WARNINGS = frozenset({"client_cert_expires_soon"})


class MailMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.problem = Gauge(
            "santeguard_mail_problem",
            "1 while a mail channel (smtp, imap, certificate) has this problem.",
            ["channel", "problem"],
            registry=registry,
        )
        self.outbound = Counter(
            "santeguard_mail_outbound_total",
            "Delivery attempts of outbound mail, by outcome (sent, temporary, permanent).",
            ["outcome"],
            registry=registry,
        )
        self.inbound = Counter(
            "santeguard_mail_inbound_total",
            "Inbound mail handled, by outcome (posted, quarantined, refused, receipt, duplicate).",
            ["outcome"],
            registry=registry,
        )
        self.client_cert_expiry = Gauge(
            "santeguard_mail_client_cert_expiry_timestamp_seconds",
            "When the mailbox's client certificate expires.",
            registry=registry,
        )


class MailHealth:
    def __init__(self, metrics: MailMetrics, alerts: AlertPort) -> None:
        self._metrics = metrics
        self._alerts = alerts
        self._problems: dict[str, str | None] = dict.fromkeys(CHANNELS)
        self._since: dict[str, float] = {}

    def problem(self, channel: str) -> str | None:
        return self._problems.get(channel)

    def problems(self) -> dict[str, str]:
        return {c: p for c, p in self._problems.items() if p is not None}

    async def report(self, channel: str, problem: str | None) -> None:
        """Record a channel's state; tell the admins when it changes."""
        before = self._problems.get(channel)
        if before == problem:
            return
        self._problems[channel] = problem
        if before is not None:
            self._metrics.problem.labels(channel=channel, problem=before).set(0)
        if problem is None:
            log.info("Mail %s is healthy again (was %s)", channel, before)
            self._since.pop(channel, None)
            await self._alerts.alert("alert.mail_recovered", channel=channel)
            return
        self._since[channel] = time.time()
        self._metrics.problem.labels(channel=channel, problem=problem).set(1)
        log.warning("Mail %s problem: %s", channel, problem)
        await self._alerts.alert(f"alert.mail_problem.{problem_code(problem)}", channel=channel)

    def report_body(self) -> dict[str, object]:
        """For ``/ready``'s body: each channel's problem code (None when healthy)."""
        ok = all(p in WARNINGS for p in self.problems().values())
        return {"ok": ok, "problems": dict(self._problems)}

    async def ready(self) -> bool:
        """For ``/ready``: False while a channel has a problem that stops mail (a
        certificate expiring next month is a warning, not an outage)."""
        return all(p in WARNINGS for p in self.problems().values())

    def client_cert_expiry(self, path: Path | None) -> None:
        """Export when the client certificate expires (left unset when unreadable: a 0
        would read as "expired in 1970" to an alerting rule)."""
        if path is None:
            return
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return
        self._metrics.client_cert_expiry.set(cert.not_valid_after_utc.timestamp())
