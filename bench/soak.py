"""A soak of the services-mode hub: sockets coming and going, resumes, orders
and notifications at a steady rate, for minutes; what grows.

    .venv/bin/python bench/soak.py [--minutes 10] [--warmup 60] [--sockets 200]
                                   [--churn 300] [--orders 4] [--sends 1]

Recreates the PostgreSQL database `hub_soak` and flushes Redis db 11 (it
touches nothing else), migrates, and starts the hub as the Procfile does: one
Daphne, one worker (`rundramatiq`, 1 process, 8 threads), the sweeper, with
mail to an SMTP sink (aiosmtpd, a process of its own). A user and a staff
account sign up over the API. Then, for `minutes`:

- `sockets` sockets stay open to /ws/events/, half the user's, half the
  staff's; `churn` a minute are closed at random and replaced, every other
  replacement resuming with the `last_event_id` of the socket it replaces;
- the user places `orders` orders a second, the staff moves every other one
  pending -> confirmed, and the user sends `sends` email notifications a
  second, all over the API.

Each socket checks that the ids it receives only go up (no copy, nothing out
of order) and counts `resync_required`. After `warmup` seconds, half-way and
at the end the script reads the resident memory of every process of the hub
(a process and its children), the clients connected to Redis (the whole server's) and
to PostgreSQL (this database's), and the sockets the web process counts open;
then it closes every socket and reads what the web process still counts.
Targets: RSS growth under 10 % from the warm-up to the end, no more Redis or
PostgreSQL connections at the end than half-way (connection pools grow to
what the load needs, then stay; a leak goes on growing), no socket left counted.
Exit status: 0 when every socket saw its events in order (targets met or
not), 1 otherwise, 2 when the setup failed.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import common
import httpx
import psycopg
import redis
from common import (
    RUN_ERRORS,
    check_urls,
    machine,
    remaining,
    reset_database,
    services_env,
)
from fanout import app_fingerprint, print_code, sockets_counted
from load import ORDER, _account
from notify_throughput import Hub, SmtpSink, _processes

USER, STAFF = "soak_user", "soak_staff"
SEND = {"title": "Soak", "message": "Hello", "recipient_type": "email", "recipient": "soak@example.com"}
TARGET_RSS_GROWTH = 0.10
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first reading (default 60)")
    parser.add_argument("--sockets", type=int, default=200, help="sockets kept open (default 200)")
    parser.add_argument("--churn", type=int, default=300, help="sockets closed and replaced a minute (default 300)")
    parser.add_argument("--orders", type=float, default=4.0, help="orders placed a second (default 4)")
    parser.add_argument("--sends", type=float, default=1.0, help="notifications sent a second (default 1)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hub_soak")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.warmup >= 60 * args.minutes or min(args.sockets, args.churn) < 1 or min(args.orders, args.sends) <= 0:
        parser.error("--warmup must be shorter than the soak; --sockets, --churn, --orders, --sends positive")
    return args


# --- readings ------------------------------------------------------------------------


def group_rss_kb(pgid):
    """Resident memory of every process in the process group `pgid`."""
    total = 0
    for pid, (_, group, _, _) in _processes().items():
        if group == pgid:
            with contextlib.suppress(OSError):  # gone meanwhile
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    return total


def reading(processes, args, open_sockets):
    with redis.Redis.from_url(args.redis_url) as r:
        redis_clients, counted = r.info("clients")["connected_clients"], sockets_counted(r)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        (pg_clients,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return {
        "rss_kb": {name: group_rss_kb(process.pid) for name, (process, _) in processes.running.items()},
        "redis_clients": redis_clients,
        "postgres_clients": pg_clients,
        "counted_open": counted,
        "open_sockets": open_sockets,
    }


# --- the load ------------------------------------------------------------------------


class Socket:
    """One socket to /ws/events/ and what it saw."""

    def __init__(self, ws_url, token, stats, after=None):
        self.url = ws_url + ("" if after is None else f"?last_event_id={after}")
        self.token = token
        self.stats = stats
        self.last_id = after
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        try:
            async with connect(self.url, additional_headers={"Authorization": f"Token {self.token}"}) as ws:
                self.stats["opened"] += 1
                with contextlib.suppress(ConnectionClosed):
                    async for text in ws:
                        message = json.loads(text)
                        if message.get("type") == "resync_required":
                            self.stats["resync_required"] += 1
                        elif message.get("id") is not None:
                            self.stats["events"] += 1
                            if self.last_id is not None and message["id"] <= self.last_id:
                                self.stats["out of order or copies"] += 1
                            self.last_id = message["id"]
        except asyncio.CancelledError:
            pass
        except (OSError, InvalidHandshake) as exc:
            self.stats[f"could not open: {type(exc).__name__}"] += 1

    async def close(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _steady(rate, seconds, call):
    """Call `call()` `rate` times a second for `seconds`, on schedule."""
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) < start + seconds:
        await asyncio.sleep(max(0.0, start + n / rate - now))
        await call()
        n += 1


async def drive(url, tokens, processes, args):
    stats = Counter()
    ws_url = url.replace("http://", "ws://") + "/ws/events/"
    seconds = 60 * args.minutes
    sockets = [Socket(ws_url, tokens[i % 2], stats) for i in range(args.sockets)]
    pending = []  # orders the staff moves on

    async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
        user_h, staff_h = ({"Authorization": f"Token {t}"} for t in tokens)

        async def order():
            response = await http.post("/orders/", json=ORDER, headers=user_h)
            stats[f"order create {response.status_code}"] += 1
            if response.status_code == 201 and stats["order create 201"] % 2:
                pending.append(response.json()["id"])
            if pending and random.random() < 0.5:
                response = await http.put(
                    f"/orders/{pending.pop(0)}/status/", json={"status": "confirmed"}, headers=staff_h
                )
                stats[f"status change {response.status_code}"] += 1

        async def send():
            response = await http.post("/notifications/send/", json=SEND, headers=user_h)
            stats[f"send {response.status_code}"] += 1

        async def churn():
            n = len(sockets)
            index = random.randrange(n)
            old = sockets[index]
            await old.close()
            stats["closed"] += 1
            resume = stats["closed"] % 2 == 0 and old.last_id is not None
            stats["resumed"] += resume
            sockets[index] = Socket(ws_url, old.token, stats, after=old.last_id if resume else None)

        async def readings():
            await asyncio.sleep(args.warmup)
            at_warmup = reading(processes, args, len(sockets))
            await asyncio.sleep((seconds - args.warmup) / 2)
            return at_warmup, reading(processes, args, len(sockets))

        (at_warmup, at_half), *_ = await asyncio.gather(
            readings(),
            _steady(args.orders, seconds, order),
            _steady(args.sends, seconds, send),
            _steady(args.churn / 60, seconds, churn),
        )
        at_end = reading(processes, args, len(sockets))
    for socket in sockets:
        await socket.close()
    with redis.Redis.from_url(args.redis_url) as r:
        for _ in range(30):  # the server counts its closed sockets
            if not sockets_counted(r):
                break
            await asyncio.sleep(0.5)
        left = sockets_counted(r)
    return stats, (at_warmup, at_half, at_end), left


# --- run and report --------------------------------------------------------------------


def report(info):
    m = info["machine"]
    print("\n== Soak ==")
    print(f"machine      {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}")
    print(f"parameters   {info['parameters']}")
    if "stats" in info:
        print("load         " + ", ".join(f"{k} {v}" for k, v in sorted(info["stats"].items())))
        w, h, e = info["readings"]
        met_rss = True
        for name, before in w["rss_kb"].items():
            after = e["rss_kb"].get(name, 0)
            growth = (after - before) / before if before else 0.0
            met_rss &= growth < TARGET_RSS_GROWTH
            mib = f"{before / 1024:7.1f} MiB after the warm-up, {after / 1024:7.1f} at the end"
            print(f"  RSS        {name:8} {mib} ({100 * growth:+.1f} %)")
        for key, label in (("redis_clients", "Redis      clients"), ("postgres_clients", "PostgreSQL clients")):
            whose = "the whole server's" if key == "redis_clients" else "this database's"
            print(f"  {label} {w[key]} after the warm-up, {h[key]} half-way, {e[key]} at the end ({whose})")
        print(
            f"  sockets    counted open by the web process {w['counted_open']} for {w['open_sockets']} -> "
            f"{e['counted_open']} for {e['open_sockets']}; {info['left_open']} counted 15 s after every socket closed"
        )
        bad = info["stats"].get("out of order or copies", 0) + info["stats"].get("resync_required", 0)
        growth_target = f"RSS growth under {100 * TARGET_RSS_GROWTH:.0f} % after the warm-up"
        print(f"  target     {'MET' if met_rss else 'NOT MET':7}: {growth_target}")
        # Pools grow to what the load needs, then stay: a leak goes on growing.
        met = e["redis_clients"] <= h["redis_clients"] and e["postgres_clients"] <= h["postgres_clients"]
        print(f"  target     {'MET' if met else 'NOT MET':7}: no more connections at the end than half-way")
        print(f"  target     {'MET' if not info['left_open'] else 'NOT MET':7}: no socket still counted open")
        print(f"  target     {'MET' if not bad else 'NOT MET':7}: every socket's ids only go up, no resync_required")
    print_code(info["app"])
    print(f"logs         {info['log_dir']}")
    if info.get("error"):
        print(f"ERROR        {info['error']}")


def run(args):
    db_name, maintenance_url = check_urls(args.database_url, args.redis_url, ("soak",), "redis://127.0.0.1:6379/11")
    log_dir = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    info = {"machine": machine(), "parameters": {k: v for k, v in vars(args).items() if k != "json"}}
    info["log_dir"] = str(log_dir)
    info["app"] = app_fingerprint()
    print(f"logs in {log_dir}")
    deadline = time.monotonic() + 60 * args.minutes + 300
    processes = sink = None
    exit_code = 2
    try:
        reset_database(db_name, maintenance_url)
        redis.Redis.from_url(args.redis_url, socket_timeout=5).flushdb()
        sink = SmtpSink()
        env = services_env(
            database_url=args.database_url,
            redis_url=args.redis_url,
            smtp_port=sink.port,
            secret_key="soak-bench-secret-key",
        )
        processes = Hub(env, log_dir)
        processes.manage("migrate", "--noinput", timeout=remaining(deadline))
        processes.start("web", *common.daphne_args(processes.port), "project.asgi:application")
        processes.start("worker", "manage.py", "rundramatiq", "--processes", "1", "--threads", "8")
        processes.start("sweeper", "manage.py", "run_sweeper")
        processes.wait_up(deadline)
        url = processes.url
        with httpx.Client(base_url=url, timeout=10) as client:
            tokens = (_account(client, USER), _account(client, STAFF, staff_of=args.database_url))
        exit_code = 1
        print(f"hub on {url}; soaking {args.minutes:g} min ...")
        stats, info["readings"], info["left_open"] = asyncio.run(drive(url, tokens, processes, args))
        info["stats"] = dict(stats)
        if not stats.get("out of order or copies") and not stats.get("resync_required"):
            exit_code = 0
    except RUN_ERRORS as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        info["error"] = "interrupted"
        exit_code = 130
    finally:
        if processes:
            processes.stop()
        if sink:
            sink.stop()
    report(info)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(common.main(parse_args, run))
