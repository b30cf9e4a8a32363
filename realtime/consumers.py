"""`/ws/events/`: every event its user may see, live, resumable without gaps.

Messages from the client are JSON objects with an `action`: `ping`,
`subscribe` (narrow to event types and/or one order) and `resume`. The server
sends event envelopes {"id", "type", "ts", "data"} and, outside the log,
`pong`, `subscribed`, `heartbeat`, `error` and `resync_required`.
"""

import asyncio
import contextlib
import functools
import json
import logging
import time
from urllib.parse import parse_qs

from autobahn.websocket.protocol import PreparedMessage
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from core import metrics
from core.logs import client_address, request_id_accept, request_id_bind
from realtime.auth import credential_current, origin_allowed, socket_credential
from realtime.events import EVENT_TYPES
from realtime.fanout import socket_add, socket_remove, subscription_ready
from realtime.selectors import events_after, events_resumable_from

MAX_MESSAGE_BYTES = 4096
# Client messages: a burst of RATE_BURST, refilled at RATE_PER_SECOND.
RATE_BURST = 20
RATE_PER_SECOND = 5.0
# Daphne lets an application close only with 1000 or 3000-4999.
CLOSE_UNSUPPORTED = 4003
CLOSE_TOO_BIG = 4009
CLOSE_CREDENTIALS_ENDED = 4401  # signed out, token expired, account deactivated or its staff flag changed
CLOSE_RATE_LIMITED = 4429
CLOSE_UNAVAILABLE = 4503  # Redis (which carries sign-outs) or the database is down: try again later


def _now():
    return timezone.now().isoformat()


socket_logger = logging.getLogger("hub.socket")


def _server_protocol(send):
    """The connection's autobahn protocol when Daphne serves the socket (its
    ASGI `send` is a partial over it); None under any other server, or in
    tests without one."""
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    transport = getattr(protocol, "transport", None)
    if not hasattr(protocol, "sendPreparedMessage") or not hasattr(transport, "writeSomeData"):
        return None
    return protocol


def _write_now(transport, data):
    """`transport.write(data)`, but sent at once when nothing waits before it,
    as asyncio's transports do. Twisted's write only buffers: the connection
    is registered with the event loop and written at its next turn, two epoll
    changes and a callback for each connection, a third of a fan-out's CPU,
    and no socket has its frame before the whole batch is done."""
    if transport.TLS or transport.dataBuffer or transport._tempDataBuffer or not transport.connected:
        transport.write(data)  # behind what waits, in order
        return
    sent = transport.writeSomeData(data)  # an int, or the connection-lost error its reader will see too
    if isinstance(sent, int) and sent < len(data):
        transport.write(data[sent:])


@functools.lru_cache(maxsize=256)
def _frame(text):
    """An event's WebSocket frame, built once for every socket it goes to
    (Daphne negotiates no compression, so the bytes are the same for all)."""
    return PreparedMessage(text.encode(), isBinary=False, applyMask=False, doNotCompress=True).payloadHybi


def _socket_client(scope):
    """The client's address, by the same rule (NUM_PROXIES) as for HTTP requests."""
    forwarded_for = dict(scope.get("headers", [])).get(b"x-forwarded-for")
    peer = (scope.get("client") or [None])[0]
    return client_address(peer, forwarded_for.decode("latin-1") if forwarded_for is not None else None)


def _socket_opened(consumer, refused=None):
    """The handshake's line: accepted, or refused with the reason."""
    user = getattr(consumer, "user", None)
    fields = {
        "path": consumer.scope.get("path"),  # the query string may carry a ticket
        "accepted": refused is None,
        "reason": refused,
        "user_id": user.pk if user is not None else None,
        "client": _socket_client(consumer.scope),
        "request_id": consumer.request_id,
    }
    if refused is None:
        socket_logger.info("Socket accepted", extra=fields)
    else:
        socket_logger.info("Socket refused: %s", refused, extra=fields)


def _socket_closed(consumer, code):
    fields = {
        "close_code": code,
        "duration_ms": round((time.monotonic() - consumer.opened_at) * 1000, 1),
        "user_id": consumer.user.pk,
        "request_id": consumer.request_id,
    }
    socket_logger.info("Socket closed (%s)", code, extra=fields)


class EventConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        # The handshake's X-Request-ID if sane, else a new id: everything this
        # socket logs, to its close, carries it.
        self.request_id = request_id_accept(dict(self.scope.get("headers", [])).get(b"x-request-id"))
        request_id_bind(self.request_id)
        self.opened_at = None
        if not origin_allowed(self.scope):
            _socket_opened(self, refused="origin not allowed")
            await self.close()  # before accept: the handshake is answered 403
            return
        try:
            self.credential = await socket_credential(self.scope)
        except (OperationalError, InterfaceError) as exc:
            await self._unavailable("the database", type(exc).__name__)
            return
        if self.credential is None:
            _socket_opened(self, refused="no valid credentials")
            await self.close()
            return
        self.user = self.credential.user
        self.types, self.order_id = None, None  # no narrowing
        # The newest event handled, sent or filtered out; None until the first
        # (a socket that does not resume starts with what comes live).
        self.delivered_through = None
        self.tokens, self.refilled = float(RATE_BURST), time.monotonic()
        self.lock = asyncio.Lock()  # one reader of the log at a time
        # While the socket reads from the log, live events wait here, in order.
        self.readers, self.backlog = 0, []
        # No subscription, no word of a logout to close this socket on: refused while it is down.
        if not await subscription_ready():
            await self._unavailable("Redis", "no answer on the subscription")
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        # Twisted buffers what the client has not read yet; past the bound it
        # flags the transport (its producer paused) until the buffer empties.
        self.protocol, self.dropped, self.outbox = _server_protocol(self.base_send), False, None
        self.transport = self.protocol.transport if self.protocol is not None else None
        if self.transport is not None:
            self.transport.bufferSize = settings.REALTIME_SOCKET_BUFFER_BYTES
        async with self._reading_log():  # what comes live meanwhile waits for the accept and the replay
            socket_add(self)
            self.added = True
            await self.accept()
            self.expiry_timer = None
            if self.credential.expires_at is not None:
                wait = max(0.0, (self.credential.expires_at - timezone.now()).total_seconds())
                self.expiry_timer = asyncio.get_running_loop().call_later(wait, self._credentials_expired)
            self.opened_at = time.monotonic()
            _socket_opened(self)
            metrics.socket_opened()
            if "last_event_id" in query:
                await self._replay(query["last_event_id"][0])

    async def disconnect(self, code):
        if getattr(self, "opened_at", None) is not None:  # a refused handshake was never counted, and has its line
            _socket_closed(self, code)
            metrics.socket_closed()
            self.opened_at = None
        if getattr(self, "expiry_timer", None) is not None:
            self.expiry_timer.cancel()
        if getattr(self, "added", False):
            socket_remove(self)

    async def _unavailable(self, what, why):
        """Refuse the handshake cleanly: accept, say why, close with 4503 (try again later)."""
        _socket_opened(self, refused=f"{what} is unavailable: {why}")
        await self.accept()
        await self._error(
            "unavailable", f"The event stream is unavailable: {what} is down. Try again later.", CLOSE_UNAVAILABLE
        )

    async def beat(self, text):
        """From the fan-out's heartbeat (realtime.fanout): `text`, the beat
        every socket of the process gets at this moment."""
        if not self.dropped and not await self._send_text(text):
            self._gone()

    async def _end(self, reason):
        """The credentials this socket opened with no longer stand: say so, and close."""
        await self._error("credentials_ended", reason, CLOSE_CREDENTIALS_ENDED)

    async def credentials_ended(self, message):
        """From the fan-out (realtime.fanout): a token or session of this
        socket's user ended, or (neither named) the account changed."""
        named = {"token": message["token"], "session": message["session"]}
        mine = {"token": self.credential.token, "session": self.credential.session}
        if not any(named.values()) or any(value and value == mine[kind] for kind, value in named.items()):
            await self._end(message["reason"])

    def _credentials_expired(self):
        self.expiry_timer = None  # disconnect cancels it, so the socket is still open
        asyncio.ensure_future(self._end("Your token expired."))

    async def _send_json(self, content):
        await self.send(text_data=json.dumps(content))

    async def _error(self, code, message, close=None):
        await self._send_json({"type": "error", "error": {"code": code, "message": message}})
        if close:
            await self.close(code=close)

    # ---- from the client ---------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if not self._take_token():
            await self._error("rate_limited", f"At most {RATE_PER_SECOND:g} messages a second.", CLOSE_RATE_LIMITED)
            return
        if text_data is None:
            await self._error("bad_message", "Send JSON text, not binary frames.", CLOSE_UNSUPPORTED)
            return
        if len(text_data.encode()) > MAX_MESSAGE_BYTES:
            await self._error("bad_message", f"Send at most {MAX_MESSAGE_BYTES} bytes a message.", CLOSE_TOO_BIG)
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self._error("bad_message", "Send a JSON object with an action.")
            return
        action = content.get("action")
        if action == "ping":
            await self._send_json({"type": "pong", "ts": _now()})
        elif action == "subscribe":
            await self._subscribe(content)
        elif action == "resume":
            await self._resume(content.get("last_event_id"))
        else:
            await self._error("unknown_action", "The action must be one of: ping, subscribe, resume.")

    def _take_token(self):
        now = time.monotonic()
        self.tokens = min(RATE_BURST, self.tokens + (now - self.refilled) * RATE_PER_SECOND)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _subscribe(self, content):
        types, order_id = content.get("types"), content.get("order")
        if types is not None and (not isinstance(types, list) or not types or not all(t in EVENT_TYPES for t in types)):
            await self._error("bad_subscription", f"types must be a non-empty list of: {', '.join(EVENT_TYPES)}.")
            return
        if order_id is not None and (type(order_id) is not int or order_id < 1):
            await self._error("bad_subscription", "order must be an order id.")
            return
        self.types, self.order_id = (set(types) if types else None), order_id
        await self._send_json({"type": "subscribed", "types": types, "order": order_id})

    def _wanted(self, event_type, order_id):
        return (self.types is None or event_type in self.types) and (self.order_id is None or order_id == self.order_id)

    async def _resume(self, last_event_id):
        async with self._reading_log():
            await self._replay(last_event_id)

    @contextlib.asynccontextmanager
    async def _reading_log(self):
        """Read from the log, one reader at a time; the live events that come
        meanwhile are handled after, in order."""
        self.readers += 1
        try:
            async with self.lock:
                yield
                await self._backlog_drain()
        finally:
            self.readers -= 1

    async def _backlog_drain(self):
        while self.backlog:
            event, visible, check_log = self.backlog.pop(0)
            await self._live(event, visible=visible, check_log=check_log)

    async def _replay(self, last_event_id):
        if isinstance(last_event_id, str) and last_event_id.isascii() and last_event_id.isdigit():
            last_event_id = int(last_event_id)  # from the query string
        if type(last_event_id) is not int or last_event_id < 0:
            await self._error("bad_last_event_id", "last_event_id must be a whole number of at least 0.")
            return
        if not await database_sync_to_async(events_resumable_from)(last_event_id):
            await self._resync("the event log no longer has what followed last_event_id", last_event_id)
            return
        await self._send_from_log(after=last_event_id)

    async def _send_from_log(self, *, after, through=None):
        """Send what the log has for this socket after `after` (through
        `through`, if given); live events up to there are then dropped as
        handled. False if the socket closed instead: its credentials ended."""
        before = through + 1 if through is not None else None
        while True:
            events = await database_sync_to_async(self._events_after)(after, before)
            if events is None:
                await self._end("The credentials this socket opened with no longer stand.")
                return False
            for event in events:
                if self._wanted(event.type, event.data.get("order_id")):
                    await self._send_json(event.envelope())
            if not events:
                break
            after = events[-1].id
        self.delivered_through = max(self.delivered_through or 0, after if through is None else through)
        return True

    def _events_after(self, after, before):
        """What the log sends next, or None once the socket's credentials ended:
        it shows history, so it asks the database rather than wait for the
        message that closes the socket."""
        if not credential_current(self.credential):
            return None
        return events_after(user=self.user, after=after, before=before)

    def behind(self):
        """Whether what this socket was sent passed REALTIME_SOCKET_BUFFER_BYTES
        unread and has not all gone out since (a batch of events goes out in
        one turn of the loop, so the buffer passes the bound during a big one
        whether the client reads or not; before the next, it has emptied if so)."""
        return self.transport is not None and self.transport.producerPaused and not self.dropped

    def drop(self):
        """The client leaves what it is sent unread: cut the connection, and the
        buffer with it, rather than hold more. It resumes once it reconnects."""
        self.dropped = True
        socket_logger.warning(
            "Socket dropped: its client left over %d bytes unread (REALTIME_SOCKET_BUFFER_BYTES)",
            settings.REALTIME_SOCKET_BUFFER_BYTES,
            extra={"user_id": self.user.pk, "request_id": self.request_id},
        )
        self.transport.abortConnection()

    async def _resync(self, reason, last_event_id=None):
        data = {"reason": reason, "last_event_id": last_event_id}
        await self._send_json({"id": None, "type": "resync_required", "ts": _now(), "data": data})

    # ---- live events ------------------------------------------------------------------------

    async def live(self, batch):
        """From the fan-out (realtime.fanout), in id order: [(event, visible,
        check_log), ...], with `event` a LiveEvent; `visible`, whether this
        socket may see it; `check_log`, whether events before it may have been
        lost on the way. What it sends of them goes out in one write."""
        self.outbox = []
        try:
            for n, (event, visible, check_log) in enumerate(batch):
                if self.readers:
                    self.backlog.extend(batch[n:])
                    break
                if check_log and self.delivered_through is not None:
                    # Reading the log waits on the database: in a task of its own, and
                    # counted as a reader now, so that what comes next waits behind it.
                    self.readers += 1
                    self.backlog.extend(batch[n:])
                    self.catch_up = asyncio.ensure_future(self._catch_up())  # held: the loop keeps tasks weakly
                    break
                await self._live(event, visible=visible, check_log=False)
        finally:
            outbox, self.outbox = self.outbox, None
            if outbox:
                _write_now(self.transport, b"".join(outbox))

    async def _catch_up(self):
        try:
            async with self.lock:
                await self._backlog_drain()  # its first event reads the log
        finally:
            self.readers -= 1

    async def _live(self, event, *, visible, check_log):
        if self.dropped:
            return
        if self.delivered_through is not None:
            if event.id <= self.delivered_through:
                return  # sent already, from the log
            if check_log:
                socket_logger.warning(
                    "Socket reads events after %d from the log: live ones may have been lost",
                    self.delivered_through,
                    extra={"user_id": self.user.pk, "request_id": self.request_id},
                )
                await self._send_from_log(after=self.delivered_through, through=event.id)
                return
        self.delivered_through = event.id
        if visible and self._wanted(event.type, event.order_id) and not await self._send_text(event.text):
            self._gone()

    def _gone(self):
        """The connection went before its disconnect reached this socket:
        this socket's end, not the batch's, which goes on to the others."""
        self.dropped = True
        socket_logger.info(
            "Socket closed while events were on their way",
            extra={"user_id": self.user.pk, "request_id": self.request_id},
        )

    async def _send_text(self, text):
        """Send what every socket it goes to gets the same (a live event, a
        heartbeat); False if the connection is gone or closing."""
        if self.protocol is not None:
            # Straight to Daphne's connection: the same bytes as every other
            # socket's, and none of ASGI's hops for each socket and message.
            # (autobahn's sendPreparedMessage writes just these bytes, after
            # formatting a debug line it then drops: a fifth of the fan-out.)
            if self.protocol.state != self.protocol.STATE_OPEN:
                return False
            if self.outbox is not None:  # a batch from the fan-out, written once it is done
                self.outbox.append(_frame(text))
            else:
                _write_now(self.transport, _frame(text))
            return True
        try:
            await self.send(text_data=text)
        except Exception:  # the server says the connection is closed, in its own words
            return False
        return True
