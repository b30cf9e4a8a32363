"""Helpers shared by the benchmark scripts in bench/ (run as scripts, so this imports as `common`)."""

import contextlib
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg import sql

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
STOP_TIMEOUT_SECONDS = 15


class BenchError(Exception):
    """The benchmark could not be set up; the message says why."""


class OutOfTime(Exception):
    pass


def daphne_args(port):
    """The web process as the Procfile runs it (quiet, a ping every 60 s), on 127.0.0.1:`port`."""
    return ["-m", "daphne", "--verbosity", "0", "--ping-interval", "60", "--bind", "127.0.0.1", "--port", str(port)]


# What ends a benchmark's run with its error reported, rather than a traceback.
RUN_ERRORS = (BenchError, OutOfTime, subprocess.TimeoutExpired, psycopg.Error, redis.RedisError, httpx.HTTPError)


def services_env(*, database_url, redis_url, smtp_port, secret_key, **extra):
    """The environment of the hub's processes in a benchmark: services mode on
    loopback, plain HTTP, mail to the sink, throttles out of the way."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": secret_key,
        # The benchmark drives the hub over plain HTTP on loopback.
        "HTTPS_ONLY": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "AUTH_THROTTLE_RATE": "100000/minute",
        "NOTIFY_THROTTLE_RATE": "100000/minute",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


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


def remaining(deadline):
    """Seconds left before `deadline` (time.monotonic()); OutOfTime once there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise OutOfTime("the total timeout ran out")
    return left


# --- CPU accounting from /proc ---------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """The whole machine's CPU seconds so far: busy, irq + softirq, steal and total."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]  # user .. steal; guest time is inside user
    total = sum(values)
    busy = total - values[3] - values[4]  # idle, iowait
    return {
        "busy": busy / CLOCK_TICKS,
        "irq": (values[5] + values[6]) / CLOCK_TICKS,
        "steal": values[7] / CLOCK_TICKS,
        "total": total / CLOCK_TICKS,
    }


def cpu_snapshot(parts):
    """parts: {name: CPU seconds so far} of the benchmark's processes, with the machine's and the time."""
    return {"parts": parts, **machine_cpu(), "at": time.monotonic()}


def cpu_delta(before, after):
    wall = after["at"] - before["at"]
    parts = {name: max(0.0, after["parts"][name] - before["parts"].get(name, 0.0)) for name in after["parts"]}
    capacity = after["total"] - before["total"]
    busy_seconds = after["busy"] - before["busy"]
    parts["irq+softirq"] = after["irq"] - before["irq"]  # mostly loopback TCP
    parts["steal"] = after["steal"] - before["steal"]  # the hypervisor gave the time to another guest
    # Processes this benchmark did not start (anything else running on the machine):
    # a sign that the figures were measured on a machine that was not quiet.
    parts["other processes"] = max(0.0, busy_seconds - sum(parts.values()))
    busy = busy_seconds / capacity if capacity else 0.0
    return {"wall": wall, "parts": parts, "machine_busy_fraction": busy}


def percentile(sorted_values, fraction):
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


class Processes:
    """The hub's processes for a benchmark, each in a process group of its own
    and logging to a file of its own in `log_dir`."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.running = {}

    def manage(self, *args, timeout):
        with open(self.log_dir / "manage.log", "ab") as log:
            done = subprocess.run(
                [PYTHON, "manage.py", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if done.returncode:
            raise BenchError(f"manage.py {' '.join(args)} failed:\n{self.tail('manage')}")

    def start(self, name, *command):
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            [PYTHON, *command],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its children stop with it, Ctrl-C does not reach it
        )
        self.running[name] = (process, log)
        return process

    def tail(self, name, lines=30):
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self):
        for name, (process, _) in self.running.items():
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def stop(self, *names):
        """Stop the named processes (all by default): SIGTERM, then SIGKILL
        to whatever still runs after STOP_TIMEOUT_SECONDS."""
        names = names or list(self.running)
        for name in names:
            process, _ = self.running[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name in names:
            process, log = self.running.pop(name)
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()


def main(parse_args, run, argv=None):
    """A benchmark's entry point: SIGTERM stops it as Ctrl-C does (its `run`
    then stops what it started and reports what it has); exit status 2 when
    the setup failed."""
    args = parse_args(argv)

    def terminated(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
