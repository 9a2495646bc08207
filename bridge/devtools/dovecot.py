"""A throwaway Dovecot IMAP server for the mail bridge's tests.

It behaves like an MSSanté operator's IMAP front: implicit TLS only (no clear-text
listener), TLS 1.2 minimum, a client certificate from the pinned CA required before
LOGIN, and a real maildir. Mail arrives through LMTP on a unix socket, the way an MTA
hands it over, so IDLE sees genuine new-mail notifications.

Dovecot refuses to run its login processes as root and mail users with uid 0, so when
the tests run as root it uses Debian's ``dovecot`` (internal and mail) and ``dovenull``
(login) users; unprivileged, every process runs as the current user. Its sockets and
the maildir live in a short, world-traversable directory under /tmp (unix socket paths
are limited to 108 bytes, and pytest's 0700 temporary directories would lock Dovecot's
users out); the configuration and logs go to ``workdir``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import grp
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from bridge.devtools import secretlog

__all__ = ["DOVECOT_BIN", "Dovecot", "DovecotPki"]

DOVECOT_BIN = Path("/usr/sbin/dovecot")
DOVEADM_BIN = Path("/usr/bin/doveadm")
DH_PARAMS = Path("/usr/share/dovecot/dh.pem")
_MISSING = (
    "Dovecot is not installed ({binary} is missing): run `make test`, which installs "
    "dovecot-core, dovecot-imapd and dovecot-lmtpd"
)


class DovecotPki(Protocol):
    """What Dovecot needs from ``bridge.devtools.mailcerts.Pki``."""

    @property
    def ca_cert(self) -> Path: ...

    @property
    def server_cert(self) -> Path: ...

    @property
    def server_key(self) -> Path: ...


@dataclass(frozen=True)
class _Accounts:
    """System users Dovecot's processes and the mailbox run as."""

    internal: str
    internal_group: str
    login: str
    mail_uid: int
    mail_gid: int


def _accounts() -> _Accounts:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(os.getgid()).gr_name
        return _Accounts(me.pw_name, group, me.pw_name, me.pw_uid, me.pw_gid)
    try:
        dovecot = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as e:
        raise RuntimeError(
            "running as root needs Debian's dovecot and dovenull users: run `make test`"
        ) from e
    group = grp.getgrgid(dovecot.pw_gid).gr_name
    return _Accounts("dovecot", group, "dovenull", dovecot.pw_uid, dovecot.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ssha512(password: str) -> str:
    """Dovecot's ``{SSHA512}`` scheme, so the password file holds no clear text."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def _dot_stuffed(raw: bytes) -> bytes:
    """The DATA payload: dot-stuffed, CRLF-terminated, followed by the end marker."""
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    stuffed = raw.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


async def _reply(reader: asyncio.StreamReader, step: str, expected: int) -> None:
    """Read one (possibly multi-line) LMTP reply; raise unless its code is ``expected``."""
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError(f"LMTP {step}: connection closed")
        if line[3:4] != b"-":
            break
    if not line[:3].isdigit() or int(line[:3]) != expected:
        raise RuntimeError(f"LMTP {step}: {line.decode(errors='replace').strip()}")


class Dovecot:
    """Dovecot on a free loopback port; ``async with`` starts it and removes it afterwards."""

    def __init__(
        self,
        workdir: Path,
        pki: DovecotPki,
        *,
        user: str = "sg",
        password: str | None = None,
        server_cert: Path | None = None,
        server_key: Path | None = None,
        binary: Path = DOVECOT_BIN,
    ) -> None:
        password = password or secrets.token_urlsafe(18)
        secretlog.register("Dovecot IMAP password", password)  # tests/secretscan.py
        if any(c in user + password for c in ":\r\n\0") or not user:
            raise ValueError("user and password must be non-empty, without ':' or line breaks")
        # Absolute: Dovecot reads every path in its config relative to its own directory.
        self.workdir = workdir.resolve()
        self.user = user
        self.password = password
        self.imap_port = 0
        self._pki = pki
        self._server_cert = (server_cert or pki.server_cert).resolve()
        self._server_key = (server_key or pki.server_key).resolve()
        self._binary = binary
        self._root: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "dovecot.conf"

    @property
    def lmtp_socket(self) -> Path:
        return self._runtime() / "run" / "lmtp"

    def _runtime(self) -> Path:
        if self._root is None:
            raise RuntimeError("Dovecot has not been started")
        return self._root

    async def __aenter__(self) -> Dovecot:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Prepare the directories and configuration (first time), then run Dovecot."""
        if not self._binary.exists():
            raise RuntimeError(_MISSING.format(binary=self._binary))
        if self._proc is not None:
            raise RuntimeError("Dovecot is already running")
        if self._root is None:
            self._prepare()
        await self._spawn()

    async def stop(self) -> None:
        """Stop Dovecot and delete its sockets and maildir (the log stays in ``workdir``)."""
        await self._terminate()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    async def restart(self) -> None:
        """Stop and start again on the same port with the same mail (cuts every session)."""
        await self._terminate()
        await self._spawn()

    async def pause(self) -> None:
        """Stop the server, keeping its port and mail: an IMAP outage until ``resume``."""
        await self._terminate()

    async def resume(self) -> None:
        """Start again after ``pause``, on the same port with the same mail."""
        await self._spawn()

    async def deliver(self, raw: bytes, sender: str = "sender@example.org") -> None:
        """Deliver ``raw`` (CRLF line endings) to the user's INBOX over LMTP.

        Dovecot prepends its own trace headers (Return-Path, Delivered-To, Received).
        """
        reader, writer = await asyncio.open_unix_connection(str(self.lmtp_socket))
        try:
            await _reply(reader, "greeting", 220)
            steps: tuple[tuple[str, bytes, int], ...] = (
                ("LHLO", b"LHLO localhost\r\n", 250),
                ("MAIL", f"MAIL FROM:<{sender}> BODY=8BITMIME\r\n".encode(), 250),
                ("RCPT", f"RCPT TO:<{self.user}@localhost>\r\n".encode(), 250),
                ("DATA", b"DATA\r\n", 354),
                ("message", _dot_stuffed(raw), 250),
                ("QUIT", b"QUIT\r\n", 221),
            )
            for step, data, expected in steps:
                writer.write(data)
                await writer.drain()
                await asyncio.wait_for(_reply(reader, step, expected), 30)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def kill_connections(self) -> None:
        """Cut the user's IMAP sessions (``doveadm kick``), as a network failure would."""
        proc = await asyncio.create_subprocess_exec(
            str(DOVEADM_BIN),
            "-c",
            str(self.config_path),
            "kick",
            self.user,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode not in (0, 68):  # 68: nobody was connected
            raise RuntimeError(f"doveadm kick failed: {out.decode(errors='replace').strip()}")

    def log_text(self) -> str:
        """Dovecot's log so far (it never contains passwords)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _prepare(self) -> None:
        accounts = _accounts()
        self.workdir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="sgdc-", dir="/tmp"))
        root.chmod(0o755)
        self._root = root
        home = root / "home" / self.user
        home.mkdir(parents=True)
        (root / "home").chmod(0o755)
        os.chown(home, accounts.mail_uid, accounts.mail_gid)
        home.chmod(0o700)
        passwd = root / "passwd"
        passwd.write_text(
            f"{self.user}:{_ssha512(self.password)}:{accounts.mail_uid}:{accounts.mail_gid}"
            f"::{home}::\n"
        )
        # The auth process reads it as the internal user; nobody else may.
        os.chown(passwd, os.geteuid(), accounts.mail_gid)
        passwd.chmod(0o640)
        self.imap_port = _free_port()
        self.config_path.write_text(self._config(root, accounts, passwd))

    def _config(self, root: Path, accounts: _Accounts, passwd: Path) -> str:
        dh = f"ssl_dh = <{DH_PARAMS}\n" if DH_PARAMS.exists() else ""
        # Dovecot checks client certificates against a CRL unless told not to.
        ca_with_crl: Path | None = getattr(self._pki, "ca_with_crl", None)
        ca = (ca_with_crl or self._pki.ca_cert).resolve()
        require_crl = "yes" if ca_with_crl is not None else "no"
        # Unprivileged, auth-worker cannot switch to its default user root, and the
        # login and anvil processes cannot chroot (hence "chroot =" below).
        worker_user = "root" if os.geteuid() == 0 else "$default_internal_user"
        return f"""\
base_dir = {root}/run
state_dir = {root}/state
instance_name = {root.name}
protocols = imap lmtp
listen = 127.0.0.1
hostname = localhost
default_internal_user = {accounts.internal}
default_internal_group = {accounts.internal_group}
default_login_user = {accounts.login}
log_path = {self.log_path}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
postmaster_address = postmaster@localhost
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = 0
disable_plaintext_auth = yes
ssl = required
ssl_cert = <{self._server_cert}
ssl_key = <{self._server_key}
ssl_ca = <{ca}
{dh}ssl_min_protocol = TLSv1.2
ssl_verify_client_cert = yes
ssl_require_crl = {require_crl}
auth_ssl_require_client_cert = yes

passdb {{
  driver = passwd-file
  args = scheme=SSHA512 {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imap_port}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service auth-worker {{
  user = {worker_user}
}}
# No growing delay after failed logins: the tests fail logins on purpose.
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""

    async def _spawn(self) -> None:
        with (self.workdir / "dovecot.stderr").open("ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                str(self._binary),
                "-F",
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                process_group=0,
            )
        try:
            await self._wait_ready(timeout=20)
        except BaseException:
            await self._terminate()
            raise

    async def _wait_ready(self, timeout: float) -> None:
        """Return once the imaps port completes a TLS handshake and greets, and LMTP listens."""
        proc = self._proc
        assert proc is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # readiness only; the tests verify for real
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if proc.returncode is not None:
                raise RuntimeError(
                    f"dovecot exited with status {proc.returncode}; see {self.log_path} "
                    f"and {self.workdir / 'dovecot.stderr'}"
                )
            with contextlib.suppress(OSError):
                if self.lmtp_socket.exists() and await asyncio.wait_for(self._greets(ctx), 2):
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"dovecot did not accept TLS on port {self.imap_port}")
            await asyncio.sleep(0.1)

    async def _greets(self, ctx: ssl.SSLContext) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.imap_port, ssl=ctx)
        try:
            return (await reader.readline()).startswith(b"* OK")
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # ssl errors included
                await writer.wait_closed()

    async def _terminate(self) -> None:
        """SIGTERM the whole process group, as a service manager would.

        Dovecot's master leaves running children behind when it exits (sessions with a
        client go on serving, the log/config/anvil processes they talk to with them), so
        signalling the master alone would neither cut the sessions nor free the port.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        group = proc.pid  # started with process_group=0: the group id is the master's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
            await asyncio.wait_for(_group_gone(group), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            await proc.wait()


async def _group_gone(group: int) -> None:
    """Return once no live process of ``group`` is left.

    Zombies do not count: children outliving the master are reaped by init, sometimes
    seconds later, and they hold no socket any more.
    """
    while _group_alive(group):  # noqa: ASYNC110 (polling /proc: nothing to await)
        await asyncio.sleep(0.05)


def _group_alive(group: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False
