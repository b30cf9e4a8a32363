"""Live event fan-out and idle socket capacity of /ws/events/, on loopback services.

    .venv/bin/python bench/fanout.py [--sockets 1000] [--changes 50] [--interval 0.05]
                                     [--idle-sockets 5000] [--idle-seconds 30]
                                     [--skip-idle] [--skip-baseline] [--subscribe] [--worker]
                                     [--web-processes 1]

Recreates a dedicated PostgreSQL database (`hub_fanout`) and flushes a
dedicated Redis database (/10), migrates, creates the demo staff account
(`seed_demo`) and signs it in over the API. Without `--worker` no Dramatiq
worker runs: the notifications the status changes queue wait in Redis
unsent. With it, a worker (one process, 8 threads) delivers them during the
fan-out, mail to an SMTP sink (aiosmtpd, a process of its own), so each
change also brings its notifications' status events to the sockets.

1. Fan-out. One Daphne process (or `web-processes`, each on a port of its
   own with its share of the sockets, the requests going to the first);
   `changes` orders are placed over the API
   first, then a client process (one asyncio loop, the sans-I/O protocol of
   the `websockets` library) opens `sockets` sockets to /ws/events/ with the
   staff token in an `Authorization: Token` header. One request at a time,
   started `interval` seconds apart (or as soon as the previous one answered,
   if later), the driver moves one order pending -> confirmed
   (PUT .../status/) and notes when the request left and when the response
   arrived; the client notes when each socket received that order's
   `order.status_changed` event. Latency is receipt minus response (and, also
   printed, minus request and minus the event row's `created_at` from the
   log), all on this machine's clocks; delivered is unique (socket, change)
   receipts / (sockets x changes). Redis' `INFO commandstats` before and
   after gives the commands the hub sent per change (the hub's fan-out
   traffic); every message the client received, of any type, counts in the
   server CPU per socket message.
2. Idle capacity. A fresh Daphne process; its resident memory before and after
   `idle-sockets` sockets connect, then its CPU time over `idle-seconds` with
   the sockets open and nothing published (from /proc/PID/status and stat).
3. Baseline. The same fan-out against bench/ws_baseline.py, a minimal
   broadcast server on the `websockets` library: POST /publish answers, then
   sends the body to every socket; the body is the hub's event envelope.

After each Daphne phase the sockets are closed and the script waits for
Daphne to count them closed; it reports any it still counts open,
the errors Daphne logged, the CPU time of every process involved (and of
whatever else ran on the machine) and a digest of the code under test.

Everything it starts is stopped on exit, Ctrl-C or error; process logs stay in
the directory printed at the start. RLIMIT_NOFILE is raised to its hard limit
when the soft one is too low, here and so in every process started from here.
Exit status: 0 when every phase ran and every fan-out delivered every event
(met targets or not), 1 when some event was not delivered or a phase failed
midway, 2 when the setup failed.
"""

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import httpx
import psycopg
import redis
from common import (
    CLOCK_TICKS,
    ROOT,
    RUN_ERRORS,
    STOP_TIMEOUT_SECONDS,
    BenchError,
    Processes,
    check_urls,
    cpu_delta,
    free_port,
    machine,
    percentile,
    remaining,
    reset_database,
    wait_until,
)
from notify_throughput import SmtpSink

START_TIMEOUT_SECONDS = 60
STAFF_USERNAME = "krushnappan"  # core.services.DEMO_ADMIN_USERNAME, made by `seed_demo`
STAFF_PASSWORD = "admin_password"
# Each web process writes its count of open sockets to its field of this hash
# (core.metrics.SOCKETS_KEY), as "count unix-time", at once when it changes.
SOCKETS_KEY = "hub:metrics:sockets"


def sockets_counted(client):
    """The sockets the web processes count open, all processes together."""
    return sum(int(value.split()[0]) for value in client.hgetall(SOCKETS_KEY).values())


def redis_commands(client):
    """{command: calls} since the Redis server started, from INFO commandstats."""
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


EVENT_TYPE = "order.status_changed"
TARGET_P99_SECONDS = 0.100
TARGET_RSS_PER_SOCKET_KB = 30
TARGET_CHANGES_PER_SECOND = 5.0
TARGET_CPU_RATIO = 3.0  # server CPU per socket message, hub / baseline
TARGET_IDLE_CPU = 0.05  # of one core, with idle-sockets open
TARGET_OPENS_PER_SECOND = 1000  # handshakes, while idle-sockets connect
CONNECT_CONCURRENCY = 50  # handshakes in flight; Daphne listens with a backlog of 50
FD_HEADROOM = 512


def raise_nofile(needed):
    """Soft RLIMIT_NOFILE up to the hard limit; processes started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(f"RLIMIT_NOFILE hard limit is {hard}, {needed} needed: raise it (ulimit -Hn) first")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- socket client: its own process, one event loop --------------------------
#
# Each socket is an asyncio.Protocol around the sans-I/O ClientProtocol of
# `websockets`: frames are parsed in data_received, the receipt time is taken
# there, pings are answered by the protocol, and no task or future is made
# per message. An event is recognised by a substring check and its order id
# cut out of the bytes; nothing is parsed as JSON.

_STATUS_MARK = b'"type": "' + EVENT_TYPE.encode() + b'"'
_ORDER_ID = b'"order_id": '
_TYPE = b'"type": "'


class _Socket(asyncio.Protocol):
    def __init__(self, client, uri, headers, first_message):
        from websockets.client import ClientProtocol

        self.client = client
        self.ws = ClientProtocol(uri, max_size=None)  # no extensions offered: no compression, as Daphne
        self.request = self.ws.connect()
        for name, value in headers:
            self.request.headers[name] = value
        self.first_message = first_message
        self.opened = client.loop.create_future()
        self.transport = None
        self.seen = set()

    def connection_made(self, transport):
        self.transport = transport
        self.ws.send_request(self.request)
        self._flush()

    def data_received(self, data):
        now = time.monotonic()
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if type(event) is self.client.Frame:
                if event.opcode == 1:  # text
                    self.client.on_text(self, event.data, now)
            elif not self.opened.done():  # the handshake response
                if ws.handshake_exc is None:
                    if self.first_message:
                        ws.send_text(self.first_message)
                    self.opened.set_result(True)
                else:
                    self.opened.set_exception(ws.handshake_exc)
        self._flush()

    def _flush(self):
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def eof_received(self):
        self.ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        self.client.on_lost(self, exc)

    def close(self):
        from websockets.protocol import State

        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        else:
            self.transport.abort()


class _Client:
    def __init__(self, loop):
        from websockets.frames import Frame

        self.Frame = Frame
        self.loop = loop
        self.sockets = set()
        self.closing = False
        self._reset()

    async def reset(self):
        self._reset()

    def _reset(self):
        self.receipts = defaultdict(list)  # order id -> receipt times, one per socket
        self.matched = 0
        self.duplicates = 0
        self.others = Counter()
        self.lost = Counter()
        self.sample = None
        for sock in self.sockets:
            sock.seen.clear()

    def on_text(self, sock, data, now):
        if _STATUS_MARK in data[:64]:
            start = data.find(_ORDER_ID) + len(_ORDER_ID)
            try:
                order_id = int(data[start : data.find(b",", start)])
            except ValueError:
                self.others[b"unparsed"] += 1
                return
            if order_id in sock.seen:
                self.duplicates += 1
                return
            sock.seen.add(order_id)
            self.receipts[order_id].append(now)
            self.matched += 1
            if self.sample is None:
                self.sample = bytes(data)
        else:
            start = data.find(_TYPE) + len(_TYPE)
            self.others[bytes(data[start : data.find(b'"', start)]) if start >= len(_TYPE) else b"?"] += 1

    def on_lost(self, sock, exc):
        if sock in self.sockets:
            self.sockets.discard(sock)
            if not self.closing:
                self.lost[f"close code {sock.ws.close_code}" if exc is None else f"{type(exc).__name__}: {exc}"] += 1

    async def connect(self, host, port, path, headers, count, first_message=None):
        from websockets.uri import parse_uri

        uri = parse_uri(f"ws://{host}:{port}{path}")
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        errors = Counter()
        began = time.monotonic()

        async def one():
            sock = None
            async with gate:
                try:
                    _, sock = await asyncio.wait_for(
                        self.loop.create_connection(
                            lambda: _Socket(self, uri, headers, first_message and first_message.encode()), host, port
                        ),
                        30,
                    )
                    await asyncio.wait_for(asyncio.shield(sock.opened), 30)
                    self.sockets.add(sock)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    if sock is not None and sock.transport is not None:
                        sock.transport.abort()

        self.closing = False
        await asyncio.gather(*(one() for _ in range(count)))
        return {"connected": count - sum(errors.values()), "errors": dict(errors), "seconds": time.monotonic() - began}

    async def stats(self):
        return {
            "open": len(self.sockets),
            "matched": self.matched,
            "others": dict(self.others),
            "lost": dict(self.lost),
        }

    async def results(self):
        return {
            "receipts": dict(self.receipts),
            "duplicates": self.duplicates,
            "others": {k.decode(errors="replace"): n for k, n in self.others.items()},
            "lost": dict(self.lost),
            "open": len(self.sockets),
            "sample": self.sample,
        }

    def abort(self):
        """Drop every connection at once (on the way out: no closing handshakes)."""
        self.closing = True
        for sock in list(self.sockets):
            sock.transport.abort()
        self.sockets.clear()

    async def close(self):
        self.closing = True
        began, count = time.monotonic(), len(self.sockets)
        for sock in list(self.sockets):
            sock.close()
        deadline = began + STOP_TIMEOUT_SECONDS
        while self.sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for sock in list(self.sockets):
            sock.transport.abort()
        self.sockets.clear()
        return {"closed": count, "seconds": time.monotonic() - began}


def _client_main(conn, needed):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us
    with contextlib.suppress(BenchError, ValueError, OSError):
        raise_nofile(needed)

    async def serve():
        loop = asyncio.get_running_loop()
        client = _Client(loop)
        with ThreadPoolExecutor(1) as pipe_reader:
            while True:
                try:
                    command, *params = await loop.run_in_executor(pipe_reader, conn.recv)
                except EOFError:
                    return
                if command == "quit":
                    client.abort()
                    return
                conn.send(await getattr(client, command)(*params))

    asyncio.run(serve())


class SocketClient:
    """Drives the client process: each call sends a command and waits for its answer."""

    def __init__(self, needed):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_client_main, args=(child, needed), name="ws-client", daemon=True)
        self.process.start()

    @property
    def pid(self):
        return self.process.pid

    def call(self, command, *params, timeout=60.0):
        self.conn.send((command, *params))
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.5):
            if not self.process.is_alive():
                raise BenchError(f"the socket client exited with {self.process.exitcode} during {command}")
            if time.monotonic() > deadline:
                raise BenchError(f"the socket client did not finish {command} in {timeout:g} s")
        return self.conn.recv()

    def stop(self):
        if self.process.is_alive():
            with contextlib.suppress(OSError, BenchError):
                self.conn.send(("quit",))
            self.process.join(STOP_TIMEOUT_SECONDS + 5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --- server processes -----------------------------------------------------------


class HubProcesses(Processes):
    """Daphne and the baseline server."""

    def start_daphne(self, name, port):
        return self.start(name, *common.daphne_args(port), "project.asgi:application")

    def log_size(self, name):
        path = self.log_dir / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_problems(self, name, start=0, end=None):
        """{what: count} of the errors a process logged between two offsets of its log:
        tracebacks and the hub's own complaints."""
        path = self.log_dir / f"{name}.log"
        data = path.read_bytes() if path.exists() else b""
        text = data[start:end].decode(errors="replace")
        problems = Counter()
        for line in text.splitlines():
            if line.startswith("Traceback"):
                problems["tracebacks"] += 1
            elif line.startswith(("Could not publish", "Exception inside application")):
                problems[line.split(";")[0].split(":")[0]] += 1
            elif line.startswith(("redis.exceptions.", "builtins.", "asyncio.")) or "Error: " in line[:60]:
                problems[line.strip()[:100]] += 1
        return dict(problems)


# --- /proc ------------------------------------------------------------------------


def proc_cpu(pid):
    """CPU seconds (user + system) of one process, its own threads only."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def _by_name(comm):
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() == comm:
                    pids.append(int(entry.name))
    return pids


def cpu_now(parts):
    """parts: {name: pid}; adds every redis-server and postgres process and this driver."""
    seconds = Counter()
    for name, pid in parts.items():
        with contextlib.suppress(OSError):
            seconds[name] += proc_cpu(pid)
    for name, comm in (("redis", "redis-server"), ("postgres", "postgres")):
        for pid in _by_name(comm):
            with contextlib.suppress(OSError):
                seconds[name] += proc_cpu(pid)
    usage = os.times()
    seconds["driver"] = usage.user + usage.system
    return common.cpu_snapshot(seconds)


# --- setup ---------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000, help="sockets for the fan-out (default 1000)")
    parser.add_argument("--changes", type=int, default=50, help="order status changes to fan out (default 50)")
    parser.add_argument(
        "--interval", type=float, default=0.05, help="seconds from one change's request to the next (default 0.05)"
    )
    parser.add_argument("--idle-sockets", type=int, default=5000, help="sockets for the idle phase (default 5000)")
    parser.add_argument(
        "--idle-seconds", type=float, default=120.0, help="idle CPU window (default 120: two ping intervals of Daphne)"
    )
    parser.add_argument("--skip-idle", action="store_true", help="skip the idle-capacity phase")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the websockets baseline")
    parser.add_argument(
        "--subscribe",
        action="store_true",
        help=f"narrow each fan-out socket to {EVENT_TYPE} (the consumer then drops the notification.created "
        "events of each change instead of sending them); the default is what the dashboard does: everything",
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=1,
        help="Daphne processes for the fan-out, each on its own port with its share of the sockets (default 1)",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="run a Dramatiq worker delivering the changes' notifications (mail to an SMTP sink) during the fan-out",
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hub_fanout")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--timeout", type=float, default=900.0, help="total seconds before giving up (default 900)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.web_processes < 1:
        parser.error("--web-processes must be at least 1")
    if args.sockets < 1 or args.changes < 1 or args.idle_sockets < 1 or args.idle_seconds <= 0 or args.interval < 0:
        parser.error("--sockets, --changes, --idle-sockets and --idle-seconds must be positive, --interval at least 0")
    return args


APP_FILES = ("realtime/*.py", "project/*.py", "orders/services.py", "notify/services.py")


def print_code(app):
    """The report's line that ties its figures to a version of the code (app_fingerprint())."""
    print(f"code         {', '.join(APP_FILES)}: sha256 {app['sha256']}, last changed {app['newest_change']}")


def app_fingerprint():
    """A digest of the code under test, so figures can be tied to a version of it."""
    digest, newest = hashlib.sha256(), 0.0
    for path in sorted({p for pattern in APP_FILES for p in ROOT.glob(pattern)}):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    changed = datetime.datetime.fromtimestamp(newest, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"sha256": digest.hexdigest()[:12], "newest_change": changed}


def wait_http(processes, url, deadline, what):
    def ready():
        processes.check_alive()
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, min(deadline, time.monotonic() + START_TIMEOUT_SECONDS), what, error=BenchError)


def sign_in(client):
    response = client.post("/api/v1/auth/token/", json={"username": STAFF_USERNAME, "password": STAFF_PASSWORD})
    if response.status_code != 200:
        raise BenchError(f"token answered {response.status_code}: {response.text[:500]}")
    return response.json()["token"]


def place_orders(client, headers, count):
    ids = []
    for _ in range(count):
        response = client.post("/api/v1/orders/", json={"total_amount": "10.00"}, headers=headers)
        if response.status_code != 201:
            raise BenchError(f"placing an order answered {response.status_code}: {response.text[:500]}")
        ids.append(response.json()["id"])
    return ids


def connect_sockets(sockets, port, path, headers, count, deadline, first_message=None):
    result = sockets.call(
        "connect", "127.0.0.1", port, path, headers, count, first_message, timeout=min(600.0, remaining(deadline))
    )
    rate = result["connected"] / result["seconds"] if result["seconds"] else 0.0
    print(f"  {result['connected']}/{count} sockets open in {result['seconds']:.1f} s ({rate:.0f}/s)")
    for error, n in result["errors"].items():
        print(f"    {n} x {error}")
    if not result["connected"]:
        raise BenchError(f"no socket could connect to 127.0.0.1:{port}{path}")
    return result


# --- one fan-out, hub or baseline ---------------------------------------------------------


def _summary(values):
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else None,
        "min": values[0] if values else None,
    }


def fan_out(sockets, keys, change, interval, cpu_parts, expected_sockets, deadline, created=None, settle=10.0):
    """Make one change per key, `interval` apart; returns receipts and latencies.

    change(key) makes the change and returns when its HTTP response has arrived.
    created(), if given, answers {key: monotonic time the server wrote the event}.
    """
    sockets.call("reset")
    requested, responded, durations = {}, {}, []
    before = cpu_now(cpu_parts)
    start = time.monotonic()
    for n, key in enumerate(keys):
        pause = start + n * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        requested[key] = time.monotonic()
        change(key)
        responded[key] = time.monotonic()
        durations.append(responded[key] - requested[key])
    sent_seconds = time.monotonic() - start
    # Wait for every receipt, or until nothing has arrived for `settle` seconds.
    expected = expected_sockets * len(keys)
    last, last_change = -1, time.monotonic()
    while True:
        stats = sockets.call("stats")
        now = time.monotonic()
        if stats["matched"] != last:
            last, last_change = stats["matched"], now
        if stats["matched"] >= expected or now - last_change >= settle or now >= deadline:
            break
        time.sleep(0.1)
    cpu = cpu_delta(before, cpu_now(cpu_parts))
    results = sockets.call("results", timeout=120)
    written = created() if created else {}
    latencies, from_request, from_event, to_all, per_change = [], [], [], [], []
    for key, at in responded.items():
        times = results["receipts"].get(key, [])
        per_change.append(
            {
                "key": key,
                "requested": requested[key] - start,
                "request_seconds": at - requested[key],
                "written": written[key] - start if key in written else None,
                "received": len(times),
                "first": min(times) - at if times else None,
                "last": max(times) - at if times else None,
            }
        )
        latencies += [t - at for t in times]
        from_request += [t - requested[key] for t in times]
        if key in written:
            from_event += [t - written[key] for t in times]
        if len(times) >= expected_sockets:
            to_all.append(max(times) - at)
    for values in (latencies, from_request, from_event, to_all, durations):
        values.sort()
    unexpected = sum(len(v) for k, v in results["receipts"].items() if k not in responded)
    return {
        "sockets": expected_sockets,
        "changes": len(keys),
        "interval": interval,
        "sent_seconds": sent_seconds,
        "changes_per_second": len(keys) / sent_seconds if sent_seconds else None,
        "received": len(latencies),
        "expected": expected,
        "delivered": len(latencies) / expected,
        "duplicates": results["duplicates"],
        "unexpected": unexpected,
        "others": results["others"],
        "lost": results["lost"],
        "open_after": results["open"],
        "latency": _summary(latencies),
        "from_request": _summary(from_request),
        "from_event": _summary(from_event) if created else None,
        "to_all": {"complete": len(to_all), "p50": percentile(to_all, 0.50), "max": to_all[-1] if to_all else None},
        "request": {"p50": percentile(durations, 0.50), "p99": percentile(durations, 0.99), "max": durations[-1]},
        "cpu": cpu,
        "sample": results["sample"],
        "per_change": per_change,  # times in seconds: requested and written from the first request, the rest from
        # the change's response
    }


def close_and_drain(sockets, redis_url, members_before, patience=10.0):
    """Close every socket, then wait until the web processes count them closed
    (each consumer's disconnect does) or nothing has changed for `patience` s."""
    sockets.call("close", timeout=60)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    began = last_change = time.monotonic()
    last = None
    while True:
        members = sockets_counted(client)
        now = time.monotonic()
        if members != last:
            last, last_change = members, now
        if members <= members_before or now - last_change >= patience:
            break
        time.sleep(0.2)
    return {"left_open": members - members_before, "seconds": now - began}


def _merge_problems(*problems):
    total = Counter()
    for found in problems:
        total.update(found)
    return dict(total)


def run_hub_fanout(args, processes, sockets, token, deadline):
    """The fan-out through `args.web_processes` Daphne processes, each on its
    own port with its share of the sockets; the changes go to the first."""
    names = ["daphne-fanout"] + [f"daphne-fanout-{n}" for n in range(2, args.web_processes + 1)]
    ports = [free_port() for _ in names]
    url = f"http://127.0.0.1:{ports[0]}"
    daphnes = [processes.start_daphne(name, port) for name, port in zip(names, ports, strict=True)]
    for port in ports:
        wait_http(processes, f"http://127.0.0.1:{port}/health/redis/", deadline, "Daphne (fan-out)")
    if args.worker:
        processes.start("worker", "manage.py", "rundramatiq", "--processes", "1", "--threads", "8")
        wait_http(processes, f"{url}/health/worker/", deadline, "the worker's first heartbeat")
    members_before = sockets_counted(redis.Redis.from_url(args.redis_url))
    headers = {"Authorization": f"Token {token}"}
    pids = ", ".join(str(d.pid) for d in daphnes)
    print(f"Daphne on {', '.join(map(str, ports))} (pid {pids}); placing {args.changes} orders ...")
    with httpx.Client(base_url=url, timeout=30) as http:
        order_ids = place_orders(http, headers, args.changes)
        subscribe = json.dumps({"action": "subscribe", "types": [EVENT_TYPE]}) if args.subscribe else None
        connected = {"connected": 0, "seconds": 0.0, "errors": Counter()}
        for n, port in enumerate(ports):
            share = args.sockets // len(ports) + (n < args.sockets % len(ports))
            print(f"connecting {share} staff sockets to /ws/events/ on port {port} ...")
            one = connect_sockets(
                sockets, port, "/ws/events/", [("Authorization", f"Token {token}")], share, deadline, subscribe
            )
            connected["connected"] += one["connected"]
            connected["seconds"] += one["seconds"]
            connected["errors"].update(one["errors"])
        members = sockets_counted(redis.Redis.from_url(args.redis_url)) - members_before
        print(f"  the web processes count {members} more sockets open")
        time.sleep(1.0)  # let the connects' stragglers (and subscribe answers) pass

        def change(order_id):
            response = http.put(f"/api/v1/orders/{order_id}/status/", json={"status": "confirmed"}, headers=headers)
            if response.status_code != 200:
                raise BenchError(f"status change answered {response.status_code}: {response.text[:500]}")

        def created():
            """When each event row was written (inside the change's transaction, just before its
            commit), from the log, on this machine's monotonic clock."""
            offset = time.time() - time.monotonic()
            with psycopg.connect(args.database_url, autocommit=True, connect_timeout=10) as conn:
                rows = conn.execute(
                    "SELECT (data->>'order_id')::bigint, created_at FROM realtime_event WHERE type = %s", [EVENT_TYPE]
                ).fetchall()
            return {order_id: at.timestamp() - offset for order_id, at in rows}

        print(f"moving {args.changes} orders pending -> confirmed, {1000 * args.interval:g} ms apart ...")
        log_start = {name: processes.log_size(name) for name in names}
        commands_before = redis_commands(redis.Redis.from_url(args.redis_url))
        cpu_parts = {"daphne" + (f" {n}" if n > 1 else ""): d.pid for n, d in enumerate(daphnes, 1)}
        result = fan_out(
            sockets,
            order_ids,
            change,
            args.interval,
            {**cpu_parts, "client": sockets.pid},
            args.sockets,
            deadline,
            created,
        )
        commands = Counter(redis_commands(redis.Redis.from_url(args.redis_url)))
        commands.subtract(commands_before)
        result["redis_commands"] = {name: n for name, n in commands.most_common() if n > 0}
    if args.worker:
        processes.stop("worker")
    log_end = {name: processes.log_size(name) for name in names}
    result["web_processes"] = len(names)
    result["connect"] = connected
    result["counted_open"] = members
    result["subscribed"] = args.subscribe
    result["close"] = close_and_drain(sockets, args.redis_url, members_before)
    processes.stop(*names)
    result["server_log_problems"] = _merge_problems(
        *(processes.log_problems(name, log_start[name], log_end[name]) for name in names)
    )
    result["server_log_problems_outside"] = {
        "before": _merge_problems(*(processes.log_problems(name, 0, log_start[name]) for name in names)),
        "closing": _merge_problems(*(processes.log_problems(name, log_end[name]) for name in names)),
    }
    return result


def run_idle(args, processes, sockets, token, deadline):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daphne = processes.start_daphne("daphne-idle", port)
    wait_http(processes, f"{url}/health/redis/", deadline, "Daphne (idle)")
    print(f"fresh Daphne on {url} (pid {daphne.pid}); warming up with one request and one socket ...")
    header = [("Authorization", f"Token {token}")]
    with httpx.Client(base_url=url, timeout=30) as http:
        http.get("/api/v1/orders/", headers={"Authorization": f"Token {token}"}).raise_for_status()
    members_before = sockets_counted(redis.Redis.from_url(args.redis_url))
    sockets.call("connect", "127.0.0.1", port, "/ws/events/", header, 1, None)
    close_and_drain(sockets, args.redis_url, members_before)
    time.sleep(2.0)
    rss_before = proc_rss_kb(daphne.pid)
    print(f"  Daphne RSS {rss_before / 1024:.1f} MiB; connecting {args.idle_sockets} sockets ...")
    connected = connect_sockets(sockets, port, "/ws/events/", header, args.idle_sockets, deadline)
    time.sleep(3.0)  # let the handshakes' garbage go
    rss_after = proc_rss_kb(daphne.pid)
    print(
        f"  Daphne RSS {rss_after / 1024:.1f} MiB; idle for {args.idle_seconds:g} s "
        f"(sockets open, nothing published) ..."
    )
    sockets.call("reset")
    before = cpu_now({"daphne": daphne.pid, "client": sockets.pid})
    end = time.monotonic() + args.idle_seconds
    while time.monotonic() < end:
        processes.check_alive()
        remaining(deadline)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    cpu = cpu_delta(before, cpu_now({"daphne": daphne.pid, "client": sockets.pid}))
    rss_end = proc_rss_kb(daphne.pid)
    stats = sockets.call("stats")
    log_end = processes.log_size("daphne-idle")
    closing = close_and_drain(sockets, args.redis_url, members_before)
    processes.stop("daphne-idle")
    return {
        "server_log_problems": processes.log_problems("daphne-idle", 0, log_end),
        "server_log_problems_outside": {"closing": processes.log_problems("daphne-idle", log_end)},
        "close": closing,
        "sockets": args.idle_sockets,
        "connect": connected,
        "open_at_end": stats["open"],
        "lost": stats["lost"],
        "messages": {k.decode(errors="replace"): n for k, n in stats["others"].items()},
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_end_kb": rss_end,
        "rss_per_socket_kb": (rss_after - rss_before) / connected["connected"],
        "seconds": args.idle_seconds,
        "cpu": cpu,
    }


def _baseline_envelope(sample, key):
    """The hub's envelope (from a socket), renumbered; a look-alike if there is none."""
    if sample:
        envelope = json.loads(sample)
    else:
        envelope = {
            "id": 0,
            "type": EVENT_TYPE,
            "ts": "2025-01-01T00:00:00.000000+00:00",
            "data": {"order_id": 0, "order_number": "ORD-20250101-ABCDEF", "status": "confirmed"},
        }
    envelope["id"] = key
    envelope["data"]["order_id"] = key
    return json.dumps(envelope)


def run_baseline(args, processes, sockets, sample, deadline):
    port, publish_port = free_port(), free_port()
    server = processes.start(
        "baseline", "bench/ws_baseline.py", "--port", str(port), "--publish-port", str(publish_port)
    )
    publish_url = f"http://127.0.0.1:{publish_port}"
    wait_http(processes, f"{publish_url}/", deadline, "the baseline server")
    time.sleep(0.5)
    rss_before = proc_rss_kb(server.pid)
    print(f"baseline server on ws://127.0.0.1:{port}/ (pid {server.pid}); connecting {args.sockets} sockets ...")
    connected = connect_sockets(sockets, port, "/", [], args.sockets, deadline)
    time.sleep(1.0)
    rss_after = proc_rss_kb(server.pid)
    with httpx.Client(base_url=publish_url, timeout=30) as http:

        def change(key):
            response = http.post("/publish", content=_baseline_envelope(sample, key).encode())
            if response.status_code != 200:
                raise BenchError(f"publish answered {response.status_code}: {response.text[:500]}")

        print(f"publishing {args.changes} messages, {1000 * args.interval:g} ms apart ...")
        keys = list(range(1, args.changes + 1))
        result = fan_out(
            sockets,
            keys,
            change,
            args.interval,
            {"baseline": server.pid, "client": sockets.pid},
            args.sockets,
            deadline,
        )
    result["connect"] = connected
    result["rss_per_socket_kb"] = (rss_after - rss_before) / connected["connected"]
    sockets.call("close", timeout=60)
    processes.stop("baseline")
    result["server_log_problems"] = processes.log_problems("baseline")
    return result


# --- report ------------------------------------------------------------------------------


def _ms(value):
    return f"{1000 * value:7.1f} ms" if value is not None else "      - ms"


def _print_cpu(cpu, nproc):
    wall = cpu["wall"]
    print(
        f"  CPU         over {wall:.1f} s: machine busy {100 * cpu['machine_busy_fraction']:.0f}% of {nproc} cores; "
        + ", ".join(
            f"{name} {seconds:.1f} s ({100 * seconds / wall:.0f}%)"
            for name, seconds in sorted(cpu["parts"].items(), key=lambda kv: -kv[1])
            if seconds >= 0.005
        )
    )


def _print_fanout(r, nproc):
    lat, req, to_all = r["latency"], r["request"], r["to_all"]
    print(
        f"  sockets     {r['connect']['connected']}/{r['sockets']} open"
        + (f", {r['counted_open']} counted open by the web processes" if "counted_open" in r else "")
        + (f"; subscribed to {EVENT_TYPE} only" if r.get("subscribed") else "")
    )
    print(
        f"  changes     {r['changes']} in {r['sent_seconds']:.2f} s ({r['changes_per_second']:.1f}/s); "
        f"request p50 {_ms(req['p50']).strip()}, p99 {_ms(req['p99']).strip()}, max {_ms(req['max']).strip()}"
    )
    print(
        f"  delivered   {r['received']}/{r['expected']} = {100 * r['delivered']:.2f}%"
        f" (duplicates {r['duplicates']}, unexpected {r['unexpected']}, sockets lost {sum(r['lost'].values())})"
    )
    for reason, n in r["lost"].items():
        print(f"    lost {n} x {reason}")
    print(
        f"  latency     response -> receipt: p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, "
        f"max {_ms(lat['max'])}, min {_ms(lat['min'])}"
    )
    fr = r["from_request"]
    print(f"              request sent -> receipt: p50 {_ms(fr['p50'])}, p99 {_ms(fr['p99'])}, max {_ms(fr['max'])}")
    fe = r.get("from_event")
    if fe:
        print(
            f"              event written -> receipt: p50 {_ms(fe['p50'])}, p99 {_ms(fe['p99'])}, max {_ms(fe['max'])}"
        )
    print(
        f"  to all      response -> last socket: p50 {_ms(to_all['p50'])}, max {_ms(to_all['max'])} "
        f"({to_all['complete']}/{r['changes']} changes reached every socket)"
    )
    if r["others"]:
        print("  also got    " + ", ".join(f"{n} {t}" for t, n in sorted(r["others"].items())))
    _print_cpu(r["cpu"], nproc)
    if "server_log_problems" in r:
        _print_log_problems(r, "during the changes")


def _cpu_per_message(r, server):
    """The server processes' CPU milliseconds per message their sockets received (every type)."""
    messages = r["received"] + sum(r["others"].values())
    seconds = sum(v for name, v in r["cpu"]["parts"].items() if name.split()[0] == server)
    return 1000 * seconds / messages if messages else None


def _problems(problems):
    return "; ".join(f"{n} x {what}" for what, n in sorted(problems.items(), key=lambda kv: -kv[1])) or "none"


def _print_log_problems(r, during):
    print(f"  server log  {during}: {_problems(r.get('server_log_problems') or {})}")
    for when, problems in (r.get("server_log_problems_outside") or {}).items():
        if problems:
            print(f"              {when}: {_problems(problems)}")
    close = r.get("close")
    if close:
        print(
            f"  closing     all sockets closed; after {close['seconds']:.1f} s the web processes still counted "
            f"{close['left_open']} open (a socket whose disconnect did not run)"
        )


def report(info):
    m, p = info["machine"], info["parameters"]
    print()
    print("== Live event fan-out ==")
    print(f"machine      {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}")
    print(
        f"parameters   sockets={p['sockets']} changes={p['changes']} interval={p['interval']:g} s "
        f"idle-sockets={p['idle_sockets']} idle-seconds={p['idle_seconds']:g} RLIMIT_NOFILE={info.get('nofile')}"
    )
    print(
        f"services     PostgreSQL {info.get('postgres_version', '?')} {p['database_url']}, Redis {p['redis_url']}; "
        f"{p.get('web_processes', 1)} Daphne process(es), "
        + (
            f"1 worker (8 threads; mails to the SMTP sink: {info.get('sink_received')})"
            if p.get("worker")
            else "no worker"
        )
    )
    hub = info.get("hub")
    if hub:
        size = f", {info['event_bytes']} bytes" if info.get("event_bytes") else ""
        print(f"hub fan-out  (Daphne, one Redis subscription per process, event {EVENT_TYPE}{size})")
        _print_fanout(hub, m["nproc"])
        for measure, label in (
            ("latency", "response -> receipt"),
            ("from_request", "request sent -> receipt"),
            ("from_event", "event written -> receipt"),
        ):
            p99 = (hub.get(measure) or {}).get("p99")
            met = hub["delivered"] >= 1.0 and p99 is not None and p99 < TARGET_P99_SECONDS
            print(
                f"  target      {'MET' if met else 'NOT MET':7}: 100% delivered and p99 {label} under "
                f"{1000 * TARGET_P99_SECONDS:.0f} ms at {hub['sockets']} sockets"
            )
        rate = hub["changes_per_second"]
        print(
            f"  target      {'MET' if rate >= TARGET_CHANGES_PER_SECOND else 'NOT MET':7}: at least "
            f"{TARGET_CHANGES_PER_SECOND:g} changes/s carried ({rate:.1f}/s"
            + (", with a worker delivering)" if p.get("worker") else ", no worker: run with --worker for the target)")
        )
        commands = hub.get("redis_commands") or {}
        print(
            f"  Redis       {sum(commands.values())} commands during the changes, "
            f"{sum(commands.values()) / hub['changes']:.1f} a change (the whole server's, INFO commandstats): "
            + ", ".join(f"{name} {n}" for name, n in list(commands.items())[:8])
        )
    idle = info.get("idle")
    if idle:
        print(f"idle         (fresh Daphne, {idle['connect']['connected']}/{idle['sockets']} sockets open)")
        print(
            f"  RSS         {idle['rss_before_kb'] / 1024:.1f} MiB before, {idle['rss_after_kb'] / 1024:.1f} MiB after "
            f"connecting, {idle['rss_end_kb'] / 1024:.1f} MiB after the idle window: "
            f"{idle['rss_per_socket_kb']:.1f} KB per socket"
        )
        verdict = "MET" if idle["rss_per_socket_kb"] <= TARGET_RSS_PER_SOCKET_KB else "NOT MET"
        print(f"  target      {verdict}: at most {TARGET_RSS_PER_SOCKET_KB} KB per socket")
        daphne = idle["cpu"]["parts"].get("daphne", 0.0)
        print(
            f"  idle CPU    Daphne {daphne:.2f} s over {idle['cpu']['wall']:.1f} s = "
            f"{100 * daphne / idle['cpu']['wall']:.1f}% of one core; sockets still open {idle['open_at_end']}, "
            f"messages received: {idle['messages'] or 'none'}"
        )
        for reason, n in idle["lost"].items():
            print(f"    lost {n} x {reason}")
        verdict = "MET" if daphne / idle["cpu"]["wall"] < TARGET_IDLE_CPU else "NOT MET"
        print(f"  target      {verdict}: idle CPU under {100 * TARGET_IDLE_CPU:g}% of one core")
        opened = idle["connect"]
        rate = opened["connected"] / opened["seconds"] if opened["seconds"] else 0.0
        verdict = "MET" if rate >= TARGET_OPENS_PER_SECOND else "NOT MET"
        print(f"  target      {verdict}: sockets open at {TARGET_OPENS_PER_SECOND}/s or more ({rate:.0f}/s)")
        _print_cpu(idle["cpu"], m["nproc"])
        _print_log_problems(idle, "while connecting and idle")
    base = info.get("baseline")
    if base:
        print(f"baseline     (bench/ws_baseline.py: websockets {info.get('websockets_version', '?')}, broadcast())")
        _print_fanout(base, m["nproc"])
        print(f"  RSS         {base['rss_per_socket_kb']:.1f} KB per socket")
        if hub:
            for measure, label in (("latency", "response -> receipt"), ("from_request", "request sent -> receipt")):
                parts = []
                for q in ("p50", "p99"):
                    h, b = hub[measure][q], base[measure][q]
                    ratio = f"{h / b:.1f}x" if h is not None and b is not None and h > 0 and b > 0 else "n/a"
                    parts.append(f"{q} {_ms(h).strip()} / {_ms(b).strip()} = {ratio}")
                print(f"  hub/base    {label}: " + "; ".join(parts))
            print("              (n/a: a ratio of figures at or below zero, where events beat the HTTP response)")
            hub_ms, base_ms = _cpu_per_message(hub, "daphne"), _cpu_per_message(base, "baseline")
            ratio = hub_ms / base_ms if hub_ms and base_ms else None
            print(
                f"  hub/base    server CPU per socket message: {hub_ms:.4f} / {base_ms:.4f} ms = "
                + (f"{ratio:.2f}x" if ratio else "n/a")
            )
            met = ratio is not None and ratio <= TARGET_CPU_RATIO
            print(f"  target      {'MET' if met else 'NOT MET':7}: at most {TARGET_CPU_RATIO:g}x the baseline's")
    print_code(info["app"])
    print(f"logs         {info['log_dir']}")
    if info.get("error"):
        print(f"ERROR        {info['error']}")


def run(args):
    deadline = time.monotonic() + args.timeout
    db_name, maintenance_url = check_urls(
        args.database_url, args.redis_url, ("fanout", "bench"), "redis://127.0.0.1:6379/10"
    )
    log_dir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    info = {
        "machine": machine(),
        "parameters": {
            "sockets": args.sockets,
            "changes": args.changes,
            "interval": args.interval,
            "idle_sockets": args.idle_sockets,
            "idle_seconds": args.idle_seconds,
            "subscribe": args.subscribe,
            "worker": args.worker,
            "web_processes": args.web_processes,
            "database_url": args.database_url,
            "redis_url": args.redis_url,
        },
        "log_dir": str(log_dir),
    }
    info["app"] = app_fingerprint()
    print(f"logs in {log_dir}; code under test {info['app']['sha256']} (last changed {info['app']['newest_change']})")
    needed = max(args.sockets, 0 if args.skip_idle else args.idle_sockets) + FD_HEADROOM
    processes = sockets = sink = None
    exit_code = 2
    try:
        info["nofile"] = raise_nofile(needed)
        import websockets

        info["websockets_version"] = websockets.__version__
        info["postgres_version"] = reset_database(db_name, maintenance_url)
        redis.Redis.from_url(args.redis_url, socket_timeout=5).flushdb()
        env = {
            **os.environ,
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "DEBUG": "0",
            "SECRET_KEY": "fanout-bench-secret-key",
            # The benchmark drives the hub over plain HTTP on loopback.
            "HTTPS_ONLY": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "AUTH_THROTTLE_RATE": "100000/minute",
            "PYTHONUNBUFFERED": "1",
        }
        if args.worker:
            sink = SmtpSink()
            env["EMAIL_URL"] = f"smtp://127.0.0.1:{sink.port}"
        processes = HubProcesses(env, log_dir)
        print("migrating, creating the staff account ...")
        processes.manage("migrate", "--noinput", timeout=remaining(deadline))
        processes.manage("seed_demo", timeout=remaining(deadline))
        sockets = SocketClient(needed)
        port = free_port()
        processes.start_daphne("daphne-setup", port)
        wait_http(processes, f"http://127.0.0.1:{port}/health/redis/", deadline, "Daphne")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            token = sign_in(http)
        processes.stop("daphne-setup")
        exit_code = 1  # from here on, a failure still has something to report
        info["hub"] = run_hub_fanout(args, processes, sockets, token, deadline)
        if not args.skip_idle:
            info["idle"] = run_idle(args, processes, sockets, token, deadline)
        if not args.skip_baseline:
            info["baseline"] = run_baseline(args, processes, sockets, info["hub"].get("sample"), deadline)
        if all(info[k]["delivered"] >= 1.0 for k in ("hub", "baseline") if k in info):
            exit_code = 0
        else:
            info["error"] = "some events were not delivered"
    except RUN_ERRORS as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        info["error"] = "interrupted"
        exit_code = 130
    finally:
        if sockets:
            sockets.stop()
        if processes:
            processes.stop()
        if sink:
            info["sink_received"] = sink.received
            sink.stop()
    if app_fingerprint() != info["app"]:
        info["app"]["changed_during_run"] = app_fingerprint()
        info["error"] = (info.get("error", "") + "; " if info.get("error") else "") + (
            "the code under test changed during the run: the figures mix two versions"
        )
    for phase in ("hub", "baseline"):
        if phase in info:
            sample = info[phase].pop("sample", None)
            if sample and phase == "hub":
                info["event_bytes"] = len(sample)
    report(info)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(common.main(parse_args, run))
