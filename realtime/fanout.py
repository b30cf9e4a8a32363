"""Live events from the relay to this process's sockets: one message per
batch for the whole process, fanned out here.

The relay (realtime.relay) hands each batch it moved into the log to
`events_publish`: in services mode one Redis PUBLISH on the events channel, which every
web process receives once on one subscription; in embedded mode straight to
this process's event loop. Either way `_dispatch` runs on the loop the
sockets live on, one batch after another, and gives each event to the
sockets allowed to see it: every staff socket, and the sockets of the users
in its audience (a private event, a user's inbox: its audience alone). The
frame's text was made once, by the relay.

The log's ids have no holes, and the relay sends them in order, so a batch
that does not start right after the last one this process got means
messages were lost (Redis dropped the subscription, or a leader died between
its commit and its publish): each socket then reads what it missed from the
log before it goes on.

The same subscription carries, on a channel of its own, the word that a
user's token or session ended (`credentials_publish`), to that user's sockets
on every process. A socket that could not hear it must not open, so a
handshake waits for a subscription that answers (`subscription_ready`).
"""

import asyncio
import json
import logging
import weakref
from collections import defaultdict
from typing import NamedTuple

import redis
import redis.asyncio
from django.conf import settings
from django.utils import timezone

from core.redis import redis_client
from realtime.publish import loop_call, publish

logger = logging.getLogger(__name__)

RESUBSCRIBE_SECONDS = 1.0
# How long a handshake waits for its process's subscription to start, or to
# answer a ping when it has been quiet for longer than QUIET_SECONDS.
SUBSCRIBE_WAIT_SECONDS = 2.0
QUIET_SECONDS = 1.0


class LiveEvent(NamedTuple):
    id: int
    type: str
    order_id: int | None
    audience: list  # user ids besides staff
    text: str  # the envelope, as sent
    private: bool = False  # for the audience alone, staff or not


def redis_channel(name):
    """The Redis channel `name` of this hub. Channels are the whole server's,
    whatever the database; named after REDIS_URL's database, hubs (and test
    runs) that share a server by database keep apart, as their keys do."""
    database = redis_client(settings.REDIS_URL).connection_pool.connection_kwargs.get("db", 0)
    return f"hub:{database}:{name}"


def events_publish(events):
    """From the relay's thread, once its round committed: [LiveEvent, ...], in id order."""
    if not events:
        return
    if settings.REDIS_URL:
        try:
            redis_client(settings.REDIS_URL).publish(redis_channel("events"), json.dumps(events))
        except redis.RedisError as exc:
            # The log has them: sockets read them from there once the next batch shows the hole.
            logger.warning("Events %d-%d not published: %s", events[0].id, events[-1].id, exc)
    else:
        loop_call(_local_batch, events)


def credentials_publish(user_id, message):
    """From any thread: the sockets of `user_id` hear `message` (a token or
    session ended, or the account changed), on every web process."""
    if settings.REDIS_URL:
        publish(redis_channel("credentials"), json.dumps([user_id, message]))
    else:
        loop_call(_local_credentials, user_id, message)


class _Sockets:
    """This loop's sockets, by who may see what, and the last event id it got."""

    def __init__(self):
        self.staff = set()
        self.users = defaultdict(set)  # every socket, staff too, by its user's id
        self.last_id = None
        self.lost = False  # messages may have been lost since last_id
        self.queue = asyncio.Queue()
        self.subscribed = asyncio.Event()  # what is published from now on comes here
        self.pubsub = None  # the subscription, while it stands
        self.heard_at = 0.0  # loop time of its last message
        self.heard = asyncio.Event()  # set at each message: what a ping waits for
        self.probe = None  # the ping under way, if any
        self.ending = set()  # credentials_ended calls under way, held: the loop keeps tasks weakly
        loop = asyncio.get_running_loop()
        self.tasks = [  # held: the loop keeps tasks weakly
            loop.create_task(self._drain(), name="hub-fanout"),
            loop.create_task(self._heartbeat(), name="hub-heartbeat"),
        ]
        if settings.REDIS_URL:
            self.tasks.append(loop.create_task(self._listen(), name="hub-fanout-subscription"))

    async def _drain(self):
        while True:
            events = await self.queue.get()
            # The batches that came while the last went out go out as one: each
            # socket's connection then takes their frames in one write.
            while not self.queue.empty():
                events = events + self.queue.get_nowait()
            try:
                await self._dispatch(events)
            except Exception:
                logger.exception("Live events %d-%d not handed to the sockets", events[0].id, events[-1].id)

    async def _heartbeat(self):
        """One heartbeat for every socket of the process, every
        REALTIME_HEARTBEAT_SECONDS: one frame, and no timer for each socket."""
        while True:
            await asyncio.sleep(settings.REALTIME_HEARTBEAT_SECONDS)
            text = json.dumps({"type": "heartbeat", "ts": timezone.now().isoformat()})
            for socket in [socket for sockets in self.users.values() for socket in sockets]:
                await socket.beat(text)

    async def _listen(self):
        """One subscription for the process, for as long as it lives."""
        loop = asyncio.get_running_loop()
        events = redis_channel("events")
        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_keepalive=True, health_check_interval=15)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(events, redis_channel("credentials"))
                    async for message in pubsub.listen():
                        self.heard_at = loop.time()
                        self.heard.set()
                        self.heard.clear()
                        if message["type"] != "message":
                            if message["type"] == "subscribe" and message["data"] == 2:  # both channels
                                self.pubsub = pubsub
                                self.subscribed.set()
                        elif message["channel"].decode() == events:
                            self.queue.put_nowait([LiveEvent(*event) for event in json.loads(message["data"])])
                        else:
                            self._credentials_ended(*json.loads(message["data"]))
            except (redis.RedisError, OSError) as exc:
                logger.warning("Live events subscription lost (%s); subscribing again", exc)
            finally:
                self.pubsub = None
                self.subscribed.clear()
                await client.aclose()
            self.lost = True  # what was published meanwhile never came
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def ready(self):
        """Whether what is published from now on reaches this process: its
        subscription stands and Redis answers on it (a stalled Redis holds the
        connection open and says nothing)."""
        if not settings.REDIS_URL:
            return True
        if not self.subscribed.is_set():
            try:
                await asyncio.wait_for(self.subscribed.wait(), SUBSCRIBE_WAIT_SECONDS)
            except TimeoutError:
                return False
        if asyncio.get_running_loop().time() - self.heard_at <= QUIET_SECONDS:
            return True
        if self.probe is None or self.probe.done():  # one ping for all the handshakes that wait
            self.probe = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self.probe)

    async def _probe(self):
        pubsub = self.pubsub
        if pubsub is None:  # lost since
            return False
        heard = asyncio.ensure_future(self.heard.wait())
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                await pubsub.ping()  # its pong comes on the subscription
                await heard
        except (TimeoutError, redis.RedisError, OSError):
            return False
        finally:
            heard.cancel()
        return True

    def _credentials_ended(self, user_id, message):
        for socket in list(self.users.get(user_id, ())):
            ending = asyncio.ensure_future(socket.credentials_ended(message))
            self.ending.add(ending)
            ending.add_done_callback(self.ending.discard)

    async def _dispatch(self, events):
        # A socket whose client left the last batches unread goes, rather than
        # hold this one too.
        for socket in [socket for sockets in self.users.values() for socket in sockets if socket.behind()]:
            socket.drop()
        batches = {}  # socket -> [(event, visible, check_log), ...] in id order; a dict keeps the sockets' order
        for event in events:
            if not self.lost and self.last_id is not None and event.id <= self.last_id:
                continue  # a copy
            lost = self.lost or (self.last_id is not None and event.id != self.last_id + 1)
            if lost:
                logger.warning("Live events before %d did not come; sockets read them from the log", event.id)
            self.last_id, self.lost = event.id, False
            # A dict keeps the order and each socket once (staff may be in the audience too).
            allowed = dict.fromkeys(() if event.private else self.staff)
            allowed.update(dict.fromkeys(s for user_id in event.audience for s in self.users.get(user_id, ())))
            for socket in allowed:
                batches.setdefault(socket, []).append((event, True, lost))
            if lost:  # every socket may have missed something, not only this event's audience
                for sockets in self.users.values():
                    for socket in sockets:
                        if socket not in allowed:
                            batches.setdefault(socket, []).append((event, False, True))
        # Socket by socket, each its whole batch in one write: the first has it at once.
        for socket, batch in batches.items():
            await socket.live(batch)


_by_loop = weakref.WeakKeyDictionary()  # event loop -> _Sockets


def _sockets():
    loop = asyncio.get_running_loop()
    sockets = _by_loop.get(loop)
    if sockets is None:
        sockets = _by_loop[loop] = _Sockets()
    return sockets


def _local_batch(events):
    """Embedded mode, on the sockets' loop."""
    _sockets().queue.put_nowait(events)


def _local_credentials(user_id, message):
    """Embedded mode, on the sockets' loop."""
    _sockets()._credentials_ended(user_id, message)


async def subscription_ready():
    """Whether this process hears what is published from now on (always, in
    embedded mode); waits up to SUBSCRIBE_WAIT_SECONDS for it."""
    return await _sockets().ready()


def socket_add(socket):
    """Give `socket` (a consumer with `user`, `live()`, `beat()`, `credentials_ended()`,
    `behind()` and `drop()`) the events it may see, the heartbeats, and the end of its
    user's credentials."""
    sockets = _sockets()
    if socket.user.is_staff:
        sockets.staff.add(socket)
    sockets.users[socket.user.pk].add(socket)


def socket_remove(socket):
    sockets = _sockets()
    sockets.staff.discard(socket)
    mine = sockets.users.get(socket.user.pk)
    if mine is not None:
        mine.discard(socket)
        if not mine:
            del sockets.users[socket.user.pk]
