"""The ``mail:`` configuration section: the network's application mailbox and its relay.

MSSanté application mailboxes authenticate with a client certificate (mutual TLS) and
the relay's certificates chain to IGC-Santé, which no public trust store holds: the CA
bundle is therefore required and pinned (the system store is never consulted).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class MailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Bridge linked rooms to the mailbox below.")
    address: str | None = Field(
        None,
        description="The application mailbox (sender of every mail), e.g. cpts@x.mssante.fr. "
        "Required when enabled.",
    )
    smtp_host: str = Field(
        "127.0.0.1", description="SMTP submission server of the MSSanté operator."
    )
    smtp_port: int = Field(
        587, ge=1, le=65535, description="SMTP port: 587 with starttls, 465 with implicit."
    )
    smtp_tls: Literal["starttls", "implicit"] = Field(
        "starttls", description="STARTTLS is forced: a relay that does not offer it is refused."
    )
    smtp_username: str | None = Field(
        None,
        description="SMTP AUTH user, if the operator asks for one besides the client certificate.",
    )
    smtp_password: SecretStr | None = Field(None, description="The SMTP AUTH password.")
    imap_host: str = Field(
        "127.0.0.1", description="IMAP server of the mailbox (implicit TLS only)."
    )
    imap_port: int = Field(993, ge=1, le=65535, description="IMAP over implicit TLS.")
    imap_username: str | None = Field(
        None, description="IMAP login of the application mailbox. Required when enabled."
    )
    imap_password: SecretStr | None = Field(
        None, description="The IMAP password. Required when enabled."
    )
    imap_folder: str = Field("INBOX", description="Folder read for incoming mail.")
    ca_file: str | None = Field(
        None, description="Pinned CA bundle (IGC-Santé in production). Required when enabled."
    )
    client_cert: str | None = Field(
        None,
        description="Client certificate (IGC-Santé ORG AUTH_CLI), PEM. Required when enabled.",
    )
    client_key: str | None = Field(
        None,
        description="The client certificate's private key, PEM (keep it 0600). Required "
        "when enabled.",
    )
    allowlist_patterns: list[str] = Field(
        default_factory=list,
        description="Recipient domains besides the imported liste blanche, e.g. '*.mssante.fr'.",
    )
    retry_base_seconds: float = Field(
        60,
        gt=0,
        description="First retry after a temporary failure (4xx, relay down), in seconds; "
        "doubles each time.",
    )
    retry_max_seconds: float = Field(
        3600, gt=0, description="Longest wait between two attempts, in seconds."
    )
    give_up_days: float = Field(
        5,
        gt=0,
        description="Give up on a mail (and tell the room and the admins) after this many "
        "days (RFC 5321 4.5.4.1: at least 4-5 days).",
    )
    claim_seconds: float = Field(
        120,
        ge=1,
        description="A worker's claim on the mail it sends (s): mail claimed by a process "
        "that died waits this long. Keep it above the time one batch of sends takes.",
    )
    idle_seconds: float = Field(300, ge=5, description="IMAP IDLE, renewed this often.")
    poll_seconds: float = Field(60, ge=1, description="Polling when the server has no IDLE.")
    max_mail_bytes: int = Field(
        25 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest mail sent or accepted, in bytes (attachments included).",
    )
    request_read_receipts: bool = Field(
        True, description="Ask recipients for a read receipt (MDN) on outbound mail."
    )
    notify_sent: bool = Field(True, description="Tell the room when each mail was accepted.")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> MailConfig:
        if not self.enabled:
            return self
        missing = [
            name
            for name in ("address", "ca_file", "client_cert", "client_key", "imap_username")
            if not getattr(self, name)
        ]
        if self.imap_password is None:
            missing.append("imap_password")
        if missing:
            raise ValueError("mail is enabled but these keys are not set: " + ", ".join(missing))
        if self.address is not None and self.address.count("@") != 1:
            raise ValueError("address must be one mailbox address (local@domain)")
        return self

    @property
    def domain(self) -> str:
        return (self.address or "@santeguard.invalid").rsplit("@", 1)[1].lower()

    def secret_values(self) -> list[SecretStr | None]:
        return [self.smtp_password, self.imap_password]
