"""Helpers shared by the benchmark scripts in bench/ (run as scripts, so this imports as `common`)."""

import contextlib
import math
import os
import platform
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class BenchError(Exception):
    """The benchmark could not be set up; the message says why."""


class OutOfTime(Exception):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_urls(database_url, redis_url, db_words, redis_example):
    """The database name and a maintenance URL (its /postgres), once both URLs are checked to be
    loopback, a database whose name contains one of `db_words` and a Redis database other than /0."""
    db = urlsplit(database_url)
    if db.scheme not in ("postgres", "postgresql") or db.hostname not in LOOPBACK:
        raise BenchError("--database-url must be postgres:// on 127.0.0.1")
    name = db.path.lstrip("/")
    if not any(word in name for word in db_words):
        words = " or ".join(f"'{word}'" for word in db_words)
        raise BenchError(f"the database is dropped and recreated, so its name must contain {words} (got {name!r})")
    rd = urlsplit(redis_url)
    if rd.scheme != "redis" or rd.hostname not in LOOPBACK:
        raise BenchError("--redis-url must be redis:// on 127.0.0.1")
    if rd.path.strip("/") in ("", "0"):
        raise BenchError(f"the Redis database is flushed, so give one of its own (not /0), e.g. {redis_example}")
    return name, urlunsplit(db._replace(path="/postgres"))


def reset_database(name, maintenance_url):
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return conn.execute("SHOW server_version").fetchone()[0]


def machine():
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def wait_until(predicate, deadline, what, interval=0.2, error=OutOfTime):
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise error(f"timed out waiting for {what}")
        time.sleep(interval)


def percentile(sorted_values, fraction):
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]
