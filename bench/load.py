"""The write path under load, services mode, on loopback services.

    .venv/bin/python bench/load.py [--seconds 10] [--clients 16] [--latency-clients 8]

Recreates a dedicated PostgreSQL database (`hub_load_bench`), flushes a
dedicated Redis database (/8), starts an SMTP sink, one Daphne process, one
`rundramatiq` worker and the sweeper, with a bare Django JSON view added to the
hub's routes (bench/anchor_settings.py) as the anchor. Then, one phase after
another, for `--seconds` each:

- the bare view, and `GET /api/v1/auth/token/check/`, at `--clients`, taking
  turns in four slices of a quarter phase each;
- the floor under an order create: a bare view running as many SQL statements
  in a transaction as raw SQL, at `--clients`;
- `POST /api/v1/orders/` at `--clients`, then at `--latency-clients`;
- `GET /api/v1/orders/` (20 rows a page) at `--clients`;

while a user socket and a staff socket on `/ws/events/` check every event
they get: ids in order, `resync_required`, and event written -> received;
at the end, against a replay of the log to the same account, the events
each missed and any it got that the replay does not hold.
It prints each figure, the ratios and a verdict per target.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import common
import httpx
import psycopg
import redis
import websockets
from common import (
    ROOT,
    RUN_ERRORS,
    BenchError,
    check_urls,
    cpu_delta,
    machine,
    percentile,
    remaining,
    reset_database,
    services_env,
)
from notify_throughput import (
    Hub,
    SmtpSink,
    cpu_now,
    start_profile,
    stop_profile,
    summarize_profile,
    worker_child_pid,
)

PASSWORD = "bench-Load-2024!"
ORDER = {"total_amount": "149.99", "currency": "INR", "shipping_address": "1 Bench Road", "notes": "load"}
# The table of the bare write view (bench/anchor_urls.py).
WRITE_TABLE = "CREATE TABLE bench_write (id bigserial PRIMARY KEY, body text NOT NULL)"
USER, STAFF = "load_user", "load_staff"
ANCHOR_SLICES = 4  # turns the bare view and the token check take
TARGETS = {"creates_per_s": 150, "create_p99_ms": 100, "token_check_ratio": 0.6, "event_p99_ms": 100}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for throughput (default 16)")
    parser.add_argument("--latency-clients", type=int, default=8, help="concurrent clients for the p99 (default 8)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hub_load_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--server",
        choices=["daphne", "uvicorn"],
        default="daphne",
        help="the ASGI server of the web process (default daphne, as the Procfile; uvicorn must be installed)",
    )
    parser.add_argument(
        "--profile",
        choices=["gil", "cpu", "idle"],
        help="record the web and the worker processes with py-spy during the order creates at --clients: "
        "gil (the thread holding the GIL), cpu (threads on a CPU) or idle (every thread, waiting included)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def _account(client, username, staff_of=None):
    """A registered account's token (staff ones are made so by the database)."""
    body = {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}
    response = client.post("/api/v1/auth/register/", json=body)
    if response.status_code != 201:
        raise BenchError(f"register answered {response.status_code}: {response.text[:300]}")
    if staff_of:
        with psycopg.connect(staff_of, autocommit=True) as conn:
            conn.execute("UPDATE core_user SET is_staff = true WHERE username = %s", [username])
    response = client.post("/api/v1/auth/token/", json={"username": username, "password": PASSWORD})
    if response.status_code != 200:
        raise BenchError(f"token answered {response.status_code}: {response.text[:300]}")
    return response.json()["token"]


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a Python client
    light enough (tens of microseconds a request) that the server, not the
    load generator, is what a phase measures."""

    def __init__(self, url, headers):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        status_line = await self.reader.readuntil(b"\r\n")
        length, close = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1])

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _phase(url, token, method, path, clients, seconds, body=None, expect=200):
    """Requests from `clients` concurrent clients for `seconds`: (count per second, sorted latencies, errors)."""
    latencies, errors = [], 0
    stop_at = time.monotonic() + seconds
    headers = {"Authorization": f"Token {token}"} if token else {}

    async def one_client():
        nonlocal errors
        connection = _Connection(url, headers)
        try:
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                status = await connection.request(method, path, body)
                latencies.append(time.perf_counter() - began)
                if status != expect:
                    errors += 1
        finally:
            connection.close()

    began = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.monotonic() - began
    return {"per_s": len(latencies) / wall, "latencies": sorted(latencies), "errors": errors}


class Watcher:
    """One socket, checking each event it gets."""

    def __init__(self, url, token, name, username):
        self.url = url.replace("http://", "ws://", 1) + "/ws/events/"
        self.token, self.name, self.username = token, name, username
        self.events, self.resyncs, self.backwards, self.latencies = 0, 0, 0, []
        self.by_type = defaultdict(list)  # latencies by event type
        self.last_id = None
        self.received = set()
        self.replayed = self.missing = self.unexpected = None  # against the log, once the run is over

    async def run(self, stop):
        headers = {"Authorization": f"Token {self.token}"}
        async with websockets.connect(self.url, additional_headers=headers, max_queue=None) as ws:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                received = time.time()
                message = json.loads(raw)
                if message.get("type") == "resync_required":
                    self.resyncs += 1
                elif isinstance(message.get("id"), int):
                    self.events += 1
                    self.received.add(message["id"])
                    if self.last_id is not None and message["id"] <= self.last_id:
                        self.backwards += 1
                    self.last_id = max(self.last_id or 0, message["id"])
                    latency = received - datetime.fromisoformat(message["ts"]).timestamp()
                    self.latencies.append(latency)
                    self.by_type[message["type"]].append(latency)

    def report(self):
        latencies = sorted(self.latencies)
        return {
            "events": self.events,
            "resync_required": self.resyncs,
            "out_of_order": self.backwards,
            "replayed": self.replayed,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
            "p99_ms_by_type": {kind: _ms(sorted(values), 0.99) for kind, values in sorted(self.by_type.items())},
        }


async def _log_position(url, token):
    """Where the event log stands: the hub's own answer, from a socket ticket."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Token {token}"}) as client:
        response = await client.post("/api/v1/realtime/ticket/")
        response.raise_for_status()
        return response.json()["last_event_id"]


async def _replayed(watcher, after, through, quiet=1.0):
    """The ids after `after`, through `through`, that the log replays to
    `watcher`'s account on a resuming socket: what the hub says it may see."""
    ids = set()
    headers = {"Authorization": f"Token {watcher.token}"}
    async with websockets.connect(f"{watcher.url}?last_event_id={after}", additional_headers=headers) as ws:
        with contextlib.suppress(TimeoutError):
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), quiet))
                if isinstance(message.get("id"), int) and message["id"] <= through:
                    ids.add(message["id"])
    return ids


async def _check_against_log(watchers, url, after):
    """Once the load is over: each socket's missing and unexpected ids
    against a replay of the log from `after` through its newest event,
    allowing the last of them a few seconds to arrive live."""
    through = await _log_position(url, watchers[0].token)
    for watcher in watchers:
        expected = await _replayed(watcher, after, through)
        for _ in range(50):
            if expected <= watcher.received:
                break
            await asyncio.sleep(0.1)
        watcher.replayed = len(expected)
        watcher.missing = len(expected - watcher.received)
        watcher.unexpected = len({i for i in watcher.received if after < i <= through} - expected)


async def _drive(hub, sink, user_token, staff_token, args):
    url = hub.url
    stop = asyncio.Event()
    watchers = [Watcher(url, user_token, "user", USER), Watcher(url, staff_token, "staff", STAFF)]
    tasks = [asyncio.create_task(w.run(stop)) for w in watchers]
    await asyncio.sleep(1)
    # Checked from here: the sockets are open, the load has not begun.
    after = await _log_position(url, user_token)
    phases = {}
    n, s = args.clients, args.seconds
    # The anchor and the token check take turns in short slices, so that the
    # machine's swings fall on both alike.
    slices = {"bare view": [], "token check": []}
    for _ in range(ANCHOR_SLICES):
        slices["bare view"].append(await _phase(url, None, "GET", "/bench/bare/", n, s / ANCHOR_SLICES))
        slices["token check"].append(
            await _phase(url, user_token, "GET", "/api/v1/auth/token/check/", n, s / ANCHOR_SLICES)
        )
    for name, parts in slices.items():
        phases[name] = {
            "per_s": sum(p["per_s"] for p in parts) / len(parts),
            "latencies": sorted(x for p in parts for x in p["latencies"]),
            "errors": sum(p["errors"] for p in parts),
        }
    # The floor: the same number of statements in a transaction, with none of the hub's code.
    before = cpu_now(hub, sink)
    phases["bare write"] = await _phase(url, None, "POST", "/bench/bare/write/", n, s, {}, 201)
    phases["bare write"]["cpu"] = cpu_delta(before, cpu_now(hub, sink))
    profiles = []
    if args.profile:
        for name, pid in (("web", hub.pgid("web")), ("worker", worker_child_pid(hub))):
            profiles.append((name, start_profile(pid, name, hub.log_dir, args.profile)))
    before = cpu_now(hub, sink)
    phases["order create"] = await _phase(url, user_token, "POST", "/api/v1/orders/", n, s, ORDER, 201)
    # The worker and the relay still work on this phase's orders after its last request.
    await asyncio.sleep(2)
    phases["order create"]["cpu"] = cpu_delta(before, cpu_now(hub, sink))
    for name, profile in profiles:
        if path := stop_profile(profile):
            print(f"py-spy ({args.profile}) of the {name} process during the order creates, {path}:")
            print(summarize_profile(path, top=40))
    phases[f"order create at {args.latency_clients}"] = await _phase(
        url, user_token, "POST", "/api/v1/orders/", args.latency_clients, s, ORDER, 201
    )
    phases["order list"] = await _phase(url, user_token, "GET", "/api/v1/orders/", n, s)
    await asyncio.sleep(3)  # the last events, and the worker's status changes
    await _check_against_log(watchers, url, after)
    stop.set()
    await asyncio.gather(*tasks)
    return phases, {w.name: w.report() for w in watchers}


def _ms(latencies, fraction):
    return round(1000 * percentile(latencies, fraction), 1) if latencies else None


def _report_cpu(name, phase):
    """CPU per request of each process, and the rate at which the machine's
    cores would be busy with nothing else."""
    cpu, requests = phase["cpu"], phase["per_s"] * phase["cpu"]["wall"]
    if not requests:
        return
    per_request = {part: 1000 * seconds / requests for part, seconds in cpu["parts"].items()}
    total = sum(ms for part, ms in per_request.items() if part not in ("driver", "other processes", "steal"))
    cores = os.cpu_count()
    print(
        f"{name}: CPU ms a request: "
        + ", ".join(f"{part} {ms:.1f}" for part, ms in per_request.items() if ms >= 0.05)
        + f"; the hub's total {total:.1f} ms, so {cores} cores carry at most {1000 * cores / total:.0f}/s"
        + f" (machine {100 * cpu['machine_busy_fraction']:.0f} % busy)"
    )


def report(info):
    print(f"\nmachine: {info['machine']}")
    print(f"{'phase':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, phase in info.get("phases", {}).items():
        print(
            f"{name:<24} {phase['per_s']:>8.1f} {_ms(phase['latencies'], 0.5):>8} "
            f"{_ms(phase['latencies'], 0.99):>8} {phase['errors']:>7}"
        )
    for name, socket in info.get("sockets", {}).items():
        print(f"{name} socket: {socket}")
    for name, phase in info.get("phases", {}).items():
        if "cpu" in phase:
            _report_cpu(name, phase)
    if "phases" in info:
        phases = info["phases"]
        ratio = phases["token check"]["per_s"] / phases["bare view"]["per_s"]
        creates = phases["order create"]["per_s"]
        p99 = _ms(next(p for k, p in phases.items() if k.startswith("order create at"))["latencies"], 0.99)
        event_p99 = max((s["p99_ms"] or 0) for s in info["sockets"].values())
        clean = all(
            s["resync_required"] == s["out_of_order"] == s["missing"] == s["unexpected"] == 0
            for s in info["sockets"].values()
        )
        drops = info.get("layer_drops")
        verdicts = {
            f"order creates/s >= {TARGETS['creates_per_s']}": (round(creates, 1), creates >= TARGETS["creates_per_s"]),
            f"order create p99 < {TARGETS['create_p99_ms']} ms": (p99, p99 < TARGETS["create_p99_ms"]),
            f"token check / bare view >= {TARGETS['token_check_ratio']}": (
                round(ratio, 3),
                ratio >= TARGETS["token_check_ratio"],
            ),
            "sockets: no resync, in id order, every event they may see and no other": (clean, clean),
            "layer drops (sockets that read missed events from the log)": (drops, drops == 0),
            f"event written -> received p99 < {TARGETS['event_p99_ms']} ms": (
                event_p99,
                event_p99 < TARGETS["event_p99_ms"],
            ),
        }
        if "bare write" in phases:
            floor = phases["bare write"]["per_s"]
            print(f"  order create / bare write (the same statement count as raw SQL): {creates / floor:.3f}")
        for name, (value, met) in verdicts.items():
            print(f"  {'MET ' if met else 'NOT MET'}  {name}: {value}")
    if "error" in info:
        print(f"error: {info['error']}")


def run(args):
    deadline = time.monotonic() + args.timeout
    db_name, maintenance_url = check_urls(args.database_url, args.redis_url, ("bench",), "redis://127.0.0.1:6379/8")
    log_dir = Path(tempfile.mkdtemp(prefix="load-bench-"))
    info = {"machine": machine(), "parameters": vars(args) | {"json": str(args.json)}, "log_dir": str(log_dir)}
    print(f"logs in {log_dir}")
    sink = hub = None
    exit_code = 2
    try:
        reset_database(db_name, maintenance_url)
        redis.Redis.from_url(args.redis_url, socket_timeout=5).flushdb()
        sink = SmtpSink()
        env = services_env(
            database_url=args.database_url,
            redis_url=args.redis_url,
            smtp_port=sink.port,
            secret_key="load-bench-secret-key",
            DJANGO_SETTINGS_MODULE="anchor_settings",  # the hub's routes and the bare view
            PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
        )
        hub = Hub(env, log_dir)
        hub.manage("migrate", "--noinput", timeout=remaining(deadline))
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(WRITE_TABLE)
        if args.server == "daphne":
            web = common.daphne_args(hub.port)
        else:
            web = ["-m", "uvicorn", "--no-access-log", "--host", "127.0.0.1", "--port", str(hub.port)]
        hub.start("web", *web, "project.asgi:application")
        hub.start("worker", "manage.py", "rundramatiq", "--processes", "1", "--threads", "8")
        hub.start("sweeper", "manage.py", "run_sweeper")
        hub.wait_up(deadline)
        with httpx.Client(base_url=hub.url, timeout=10) as client:
            user_token = _account(client, USER)
            staff_token = _account(client, STAFF, staff_of=args.database_url)
        exit_code = 1
        print(f"hub on {hub.url}; {args.seconds:g} s a phase ...")
        info["phases"], info["sockets"] = asyncio.run(_drive(hub, sink, user_token, staff_token, args))
        exit_code = 0
    except RUN_ERRORS as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        info["error"] = "interrupted"
        exit_code = 130
    finally:
        if hub:
            hub.stop()
            info["layer_drops"] = (log_dir / "web.log").read_text(errors="replace").count("missed layer messages")
        if sink:
            sink.stop()
    report(info)
    if args.json:
        for phase in info.get("phases", {}).values():
            phase["p50_ms"], phase["p99_ms"] = _ms(phase["latencies"], 0.5), _ms(phase["latencies"], 0.99)
            del phase["latencies"]
        args.json.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(common.main(parse_args, run))
