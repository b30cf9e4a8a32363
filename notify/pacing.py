"""Telegram's send limits, shared by every worker: each call reserves the next
free slot for a key (a chat, or the bot) and says how long to wait for it.

Slots live in Redis in services mode, so all worker processes pace together;
in embedded mode there is one process and they live in memory.
"""

import threading
import time
from functools import cache

from django.conf import settings

from core.redis import redis_client

# KEYS[1]: the key; ARGV[1]: seconds between two slots. Returns the wait in seconds.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil((slot + interval - now) * 1000) + 1000)
return tostring(slot - now)
"""


class _RedisSlots:
    def __init__(self, url):
        self.script = redis_client(url).register_script(_RESERVE)

    def reserve(self, key, interval):
        return float(self.script(keys=[f"hub:pace:{key}"], args=[interval]))


class _LocalSlots:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_free = {}

    def reserve(self, key, interval):
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_free.get(key, 0.0))
            self.next_free[key] = slot + interval
            return slot - now


@cache
def _slots(redis_url):
    return _RedisSlots(redis_url) if redis_url else _LocalSlots()


def telegram_wait_turn(chat_id):
    """Block until this chat and the bot may send one more message."""
    wait = max(
        _slots(settings.REDIS_URL).reserve(f"telegram:chat:{chat_id}", settings.TELEGRAM_CHAT_INTERVAL_SECONDS),
        _slots(settings.REDIS_URL).reserve("telegram:bot", 1.0 / settings.TELEGRAM_BOT_MESSAGES_PER_SECOND),
    )
    if wait > 0:
        time.sleep(wait)
    return wait
