"""The HTTP server the homeserver talks to: appservice API, gate callbacks, operations.

``PUT /_matrix/app/v1/transactions/{txnId}`` commits the raw transaction before it
answers 200; a replay of a stored ``txnId`` is acked without being processed again.
Every refusal is a 4xx with a Matrix ``errcode``, counted in metrics; nothing in a
response or a log ever carries a token. Bad input is a 4xx, never a 500: a header that
is not UTF-8, a body whose ``Content-Encoding`` does not decode, JSON nested deeper than
the parser allows. The gate endpoint answers 2xx only for ``ping`` and for a decided
callback whose payload is valid (``bridge.core.antispam``) and that the gate allowed.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from bridge.core.antispam import DECIDED_CALLBACKS, NOT_DECIDED, GatePort, payload_problem
from bridge.db.transient import is_transient_db_error
from bridge.ops.metrics import Metrics
from bridge.spine.intake import IntakeActivity
from bridge.spine.validate import TransactionError, transaction_events, validate_txn_id

log = logging.getLogger("santeguard.http")

StoreTxn = Callable[[str, bytes, int], Awaitable[int | None]]


class PendingTxn(Protocol):
    """A transaction whose commit began before its body was parsed (``BeginStore``)."""

    async def stored(self, event_count: int) -> int | None: ...
    async def refused(self) -> None: ...


BeginStore = Callable[[str, bytes], Awaitable[PendingTxn | None]]
OnStored = Callable[[int, list[dict[str, Any]]], None]
Probe = Callable[[], Awaitable[dict[str, bool]]]
UserQuery = Callable[[str], Awaitable[bool]]
Report = Callable[[], dict[str, Any]]

APP_PREFIX = "/_matrix/app/v1"
# Content-Encodings aiohttp decodes; only these are named back in an error.
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


def error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def _constant_time_eq(given: str, expected: str) -> bool:
    # aiohttp decodes header bytes that are not UTF-8 into lone surrogates;
    # "surrogatepass" encodes any str, and such bytes never equal a UTF-8 token.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


class BadBody(ValueError):
    """A request body that cannot be read as JSON; ``errcode`` follows the Matrix spec."""

    def __init__(self, errcode: str, message: str, label: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message
        self.label = label  # short, bounded label for metrics
        self.close = close  # answer, then close the connection


class AppserviceServer:
    """Builds the aiohttp application; I/O behind it comes in as callables."""

    def __init__(
        self,
        *,
        hs_token: str,
        antispam_token: str | None,
        antispam_path: str,
        max_body_bytes: int,
        metrics: Metrics,
        store_txn: StoreTxn,
        on_stored: OnStored,
        gate: GatePort,
        readiness: Probe,
        user_query: UserQuery,
        report: Report | None = None,
        intake: IntakeActivity | None = None,
        begin_store: BeginStore | None = None,
    ) -> None:
        self._hs_token = hs_token
        self._antispam_token = antispam_token
        self._antispam_path = antispam_path.rstrip("/")
        self._max_body = max_body_bytes
        self._metrics = metrics
        self._store_txn = store_txn
        self._begin_store = begin_store
        self._on_stored = on_stored
        self._gate = gate
        self._readiness = readiness
        self._report = report
        self._user_query = user_query
        # Marked busy for a transaction's whole request (read, parse, commit): the
        # dispatcher's room workers step aside meanwhile (bridge.spine.queue).
        self._intake = intake or IntakeActivity()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[self._errors_middleware])
        app.router.add_put(APP_PREFIX + "/transactions/{txn_id}", self.put_transaction)
        app.router.add_get(APP_PREFIX + "/users/{user_id}", self.get_user)
        app.router.add_get(APP_PREFIX + "/rooms/{alias}", self.get_room)
        app.router.add_post(APP_PREFIX + "/ping", self.post_ping)
        app.router.add_post(self._antispam_path + "/{callback}", self.post_antispam)
        app.router.add_get("/health", self.get_health)
        app.router.add_get("/ready", self.get_ready)
        app.router.add_get("/metrics", self.get_metrics)
        return app

    # -- helpers ---------------------------------------------------------------------

    def _reject(self, status: int, errcode: str, message: str, reason: str) -> web.Response:
        self._metrics.rejected.labels(errcode=errcode, reason=reason).inc()
        return error(status, errcode, message)

    def _bad_body(self, e: BadBody) -> web.Response:
        response = self._reject(400, e.errcode, e.message, e.label)
        if e.close:
            response.force_close()
        return response

    def _check_hs_token(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        query = request.query.get("access_token")
        if header is None and query is None:
            return self._reject(401, "M_UNAUTHORIZED", "missing homeserver token", "missing_token")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not _constant_time_eq(token.strip(), self._hs_token):
                return self._reject(403, "M_FORBIDDEN", "invalid homeserver token", "bad_token")
        if query is not None and not _constant_time_eq(query, self._hs_token):
            return self._reject(403, "M_FORBIDDEN", "invalid homeserver token", "bad_token")
        return None

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._reject(404, "M_UNRECOGNIZED", "unrecognized request", "unknown_route")
        except web.HTTPMethodNotAllowed:
            return self._reject(405, "M_UNRECOGNIZED", "method not allowed", "bad_method")
        except web.HTTPRequestEntityTooLarge:
            return self._reject(
                413, "M_TOO_LARGE", f"body exceeds {self._max_body} bytes", "too_large"
            )
        except web.HTTPException:
            raise
        except Exception:
            log.exception("Unhandled error on %s %s", request.method, request.path)
            return error(500, "M_UNKNOWN", "internal error")

    async def _read_json(self, request: web.Request) -> tuple[bytes, Any]:
        """The raw body and its parsed JSON; ``BadBody`` if it cannot be read as JSON."""
        body = await self._read_body(request)
        return body, self._parse_json(body)

    async def _read_body(self, request: web.Request) -> bytes:
        """The raw body; ``BadBody`` if its Content-Encoding does not decode."""
        if request.content_length is not None and request.content_length > self._max_body:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self._max_body, actual_size=request.content_length
            )
        try:
            return await request.read()
        except web.RequestPayloadError:
            # e.g. Content-Encoding: gzip on a body that is not gzip. The rest of the body
            # is not read (aiohttp would raise and log again) and the connection is closed
            # after the answer: the parser cannot be trusted past a broken body.
            request.content.feed_eof()
            encoding = request.headers.get("Content-Encoding", "").strip().lower()
            named = encoding if encoding in _ENCODINGS else "its Content-Encoding"
            raise BadBody(
                "M_NOT_JSON", f"body could not be decoded as {named}", "bad_encoding", close=True
            ) from None

    @staticmethod
    def _parse_json(body: bytes) -> Any:
        try:
            return json.loads(body)
        except RecursionError:
            raise BadBody(
                "M_BAD_JSON", "body nests JSON deeper than SantéGuard parses", "too_deep"
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise BadBody("M_NOT_JSON", "body is not valid JSON", "not_json") from None

    # -- appservice API --------------------------------------------------------------

    async def put_transaction(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        if (denied := self._check_hs_token(request)) is not None:
            return denied
        with self._intake.storing():
            return await self._put_transaction(request, started)

    async def _put_transaction(self, request: web.Request, started: float) -> web.Response:
        txn_id = request.match_info["txn_id"]
        pending: PendingTxn | None = None
        try:
            validate_txn_id(txn_id)
            body = await self._read_body(request)
            if self._begin_store is not None:
                # PostgreSQL: the insert runs in the database while the body is parsed
                # and validated here; a body refused below loses its row first. SQLite:
                # the body goes to the intake journal (bridge/spine/journaled.py).
                try:
                    pending = await self._begin_store(txn_id, body)
                except Exception as e:
                    return self._not_stored(e)
            data = self._parse_json(body)
            events = transaction_events(data, raw=body)
        except (TransactionError, BadBody) as e:
            if pending is not None and not await self._withdraw(pending):
                return error(503, "M_UNKNOWN", "storage unavailable, retry later")
            if isinstance(e, BadBody):
                return self._bad_body(e)
            return self._reject(400, e.errcode, e.message, e.reason)
        except Exception:
            if pending is not None:
                await self._withdraw(pending)
            raise
        try:
            if pending is not None:
                seq = await pending.stored(len(events))
            else:
                seq = await self._store_txn(txn_id, body, len(events))
        except Exception as e:
            return self._not_stored(e)
        if seq is not None:
            self._metrics.transactions.labels(outcome="stored").inc()
            # After the 200 is on its way: the hand-over builds per-event objects, and the
            # homeserver need not wait for them. call_soon keeps transactions in order
            # (a later one is only read after this callback has run).
            asyncio.get_running_loop().call_soon(self._hand_over, seq, events)
        else:
            self._metrics.transactions.labels(outcome="replayed").inc()
        self._metrics.ack_latency.observe(time.perf_counter() - started)
        return web.json_response({})

    @staticmethod
    def _not_stored(e: BaseException) -> web.Response:
        """Not acked: the homeserver keeps the transaction and retries it later."""
        if is_transient_db_error(e):
            # One line per refused retry while the database is down, no traceback:
            # the outage itself is reported once (metrics, /ready, the admin alert).
            log.warning(
                "Could not store transaction (database unavailable: %s); "
                "the homeserver will retry it",
                type(e).__name__,
            )
        else:
            log.exception("Could not store transaction; the homeserver will retry it")
        return error(503, "M_UNKNOWN", "storage unavailable, retry later")

    @staticmethod
    async def _withdraw(pending: PendingTxn) -> bool:
        """Delete the row of a refused body; False if it may still be stored."""
        try:
            await pending.refused()
        except Exception as e:
            # Not known to be gone, so not refused: 503, and the homeserver sends it again.
            log.warning("Could not withdraw a refused transaction (%s)", type(e).__name__)
            return False
        return True

    def _hand_over(self, seq: int, events: list[dict[str, Any]]) -> None:
        """A committed transaction goes to the dispatcher (and is counted)."""
        try:
            self._metrics.count_event_types(events)
            self._on_stored(seq, events)
        except Exception:
            # Stored and acked, so not lost: it stays pending in the database, and the
            # dispatcher reads back whatever is not done when it starts.
            log.exception("Could not hand over stored transaction %d", seq)

    async def get_user(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs_token(request)) is not None:
            return denied
        if await self._user_query(request.match_info["user_id"]):
            return web.json_response({})
        return error(404, "M_NOT_FOUND", "no such user in this appservice")

    async def get_room(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs_token(request)) is not None:
            return denied
        return error(404, "M_NOT_FOUND", "SantéGuard provides no room aliases")

    async def post_ping(self, request: web.Request) -> web.Response:
        if (denied := self._check_hs_token(request)) is not None:
            return denied
        return web.json_response({})

    # -- synchronous gate ------------------------------------------------------------

    async def post_antispam(self, request: web.Request) -> web.Response:
        callback = request.match_info["callback"]
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if (
            not self._antispam_token
            or scheme.lower() != "bearer"
            or not _constant_time_eq(token.strip(), self._antispam_token)
        ):
            return self._reject(403, "M_FORBIDDEN", "invalid gate token", "bad_gate_token")
        if callback != "ping" and callback not in DECIDED_CALLBACKS:
            return self._not_decided(callback)
        try:
            _, payload = await self._read_json(request)
        except BadBody as e:
            return self._bad_body(e)
        if callback == "ping":
            if not isinstance(payload, dict):
                return self._reject(400, "M_BAD_JSON", "body must be a JSON object", "not_object")
            return web.json_response({"id": payload.get("id"), "status": "ok"})
        if (problem := payload_problem(callback, payload)) is not None:
            # A payload the gate cannot read is refused, never decided on empty values.
            return self._reject(400, "M_BAD_JSON", problem.message, problem.reason)
        decision = await self._gate.decide(callback, payload)
        self._antispam_counter(callback, decision.allow).inc()
        if decision.allow:
            # What json_response({}) sends, without encoding it on every callback.
            return web.Response(body=b"{}", content_type="application/json", charset="utf-8")
        return web.json_response(
            {"errcode": decision.errcode, "error": decision.reason}, status=403
        )

    @functools.cached_property
    def _antispam_counters(self) -> dict[tuple[str, bool], Any]:
        return {}

    def _antispam_counter(self, callback: str, allow: bool) -> Any:
        """The callback's counter child, looked up once (``labels()`` takes a lock and
        builds a key on every call; the gate answers on the homeserver's path)."""
        key = (callback, allow)
        counter = self._antispam_counters.get(key)
        if counter is None:
            counter = self._antispam_counters[key] = self._metrics.antispam.labels(
                callback=callback, decision="allow" if allow else "refuse"
            )
        return counter

    def _not_decided(self, callback: str) -> web.Response:
        """A callback the gate does not decide: refused or not answered, never allowed."""
        answer = NOT_DECIDED.get(callback)
        if answer is None:
            return self._reject(404, "M_UNRECOGNIZED", "unknown gate callback", "unknown_callback")
        if answer.status == 403:
            self._metrics.antispam.labels(callback=callback, decision="refuse").inc()
            return error(403, answer.errcode, answer.message)
        return self._reject(answer.status, answer.errcode, answer.message, "undecided_callback")

    # -- operations ------------------------------------------------------------------

    async def get_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_ready(self, request: web.Request) -> web.Response:
        """503 when a dependency is down. What needs attention without making SantéGuard
        unready (stuck rooms: the gate still answers) is reported beside the checks."""
        checks = await self._readiness()
        ok = all(checks.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
        if self._report is not None:
            body.update(self._report())
        return web.json_response(body, status=200 if ok else 503)

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )
