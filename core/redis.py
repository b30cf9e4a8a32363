from functools import cache

import redis


@cache
def redis_client(url):
    """One pooled, thread-safe client per Redis URL for this process.

    health_check_interval pings a connection that sat idle, so a socket the
    server or a firewall dropped is replaced instead of failing a command.
    """
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
