"""Email notification throughput, end to end, on loopback services.

    .venv/bin/python bench/notify_throughput.py [--count 5000] [--batch 1000] [--threads 8]

Recreates a dedicated PostgreSQL database (`hub_bench`) and flushes a
dedicated Redis database (/9), starts an SMTP sink (aiosmtpd, in a process of
its own), migrates, starts one Daphne process and one `rundramatiq` worker
process, registers a user over the API, posts `count` email notifications
through POST /api/v1/notifications/bulk/ and polls PostgreSQL until every row
is final. It then prints deliveries per second, the worker-only rate, the
created -> sent latency and the CPU time each process used.

Everything it starts is stopped on exit, Ctrl-C or error. The benchmark
database is left in place for inspection and dropped by the next run; process
logs stay in the directory printed at the start. Exit status: 0 when every
notification was sent, 1 when some failed or the time ran out, 2 when the
setup failed.
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
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
    CLOCK_TICKS,
    PYTHON,
    ROOT,
    RUN_ERRORS,
    BenchError,
    Processes,
    check_urls,
    cpu_delta,
    free_port,
    machine,
    percentile,
    remaining,
    reset_database,
    services_env,
    wait_until,
)

FINAL_STATUSES = ("sent", "failed", "skipped")
# The rows the benchmark posted, not the verification mail of its user's registration.
POSTED = "WHERE kind = 'manual'"
START_TIMEOUT_SECONDS = 60
TARGET_PER_SECOND = 500
PASSWORD = "bench-Throughput-2024!"


# --- SMTP sink: its own process, so it never takes the driver's GIL ---------


class _CountingHandler:
    def __init__(self, counter):
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def _sink_main(conn, counter, stop):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us
    from aiosmtpd.controller import Controller

    controller = Controller(_CountingHandler(counter), hostname="127.0.0.1", port=free_port())
    controller.start()
    conn.send(controller.port)
    stop.wait()
    controller.stop()


class SmtpSink:
    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        self.stop_event = context.Event()
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_sink_main, args=(child, self.counter, self.stop_event), name="smtp-sink", daemon=True
        )
        self.process.start()
        if not parent.poll(START_TIMEOUT_SECONDS):
            self.stop()
            raise BenchError("the SMTP sink did not start")
        self.port = parent.recv()

    @property
    def pid(self):
        return self.process.pid

    @property
    def received(self):
        return self.counter.value

    def stop(self):
        if self.process.is_alive():
            self.stop_event.set()
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --- hub processes ------------------------------------------------------------


class Hub(Processes):
    """Daphne and one Dramatiq worker."""

    def __init__(self, env, log_dir):
        super().__init__(env, log_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def pgid(self, name):
        return self.running[name][0].pid

    def wait_up(self, deadline):
        """Until Daphne answers and the worker has sent its first heartbeat
        (until then the hub reports itself unhealthy)."""

        def up():
            self.check_alive()
            try:
                return httpx.get(f"{self.url}/health/worker/", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(
            up, min(deadline, time.monotonic() + START_TIMEOUT_SECONDS), "Daphne and the worker's first heartbeat"
        )


# --- CPU accounting from /proc -------------------------------------------------


def _processes():
    """{pid: (ppid, pgid, comm, cpu seconds including reaped children)} for every process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        found[int(entry.name)] = (int(fields[1]), int(fields[2]), comm, ticks / CLOCK_TICKS)
    return found


def cpu_now(hub, sink):
    """CPU seconds so far for each part of the benchmark. Each tick is counted
    once: in a live process, or in the parent that reaped it (this is how a
    PostgreSQL backend that closed its connection stays counted)."""
    procs = _processes()
    groups = {"worker": hub.pgid("worker"), "web": hub.pgid("web")}
    totals = Counter()
    for pid, (_, pgid, comm, seconds) in procs.items():
        for name, group in groups.items():
            if pgid == group:
                totals[name] += seconds
        if pid == sink.pid:
            totals["smtp sink"] += seconds
        elif comm == "postgres":
            totals["postgres"] += seconds
        elif comm == "redis-server":
            totals["redis"] += seconds
    usage = os.times()
    totals["driver"] = usage.user + usage.system
    return common.cpu_snapshot(totals)


# --- optional profile of the worker with py-spy -------------------------------


def worker_child_pid(hub):
    """The Dramatiq worker process (the one with the threads), not its parent."""
    leader = hub.pgid("worker")
    best, most = None, 0
    for pid, (_, pgid, _, _) in _processes().items():
        if pgid != leader or pid == leader:
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                threads = int(next(line for line in f if line.startswith("Threads:")).split()[1])
        except (OSError, StopIteration):
            continue
        if threads > most:
            best, most = pid, threads
    return best


def start_profile(pid, name, log_dir, mode):
    """py-spy recording process `pid` (called `name` in the file's name)
    until stop_profile; mode: gil, cpu or idle (see --profile)."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    if pid is None:
        raise BenchError(f"could not find the {name} process to profile")
    output = log_dir / f"{name}-profile-{mode}.txt"
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(output),
        "--rate",
        "200",
        "--nonblocking",
    ]
    command += {"gil": ["--gil"], "cpu": [], "idle": ["--idle"]}[mode]
    log = open(log_dir / "py-spy.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log, output


def stop_profile(profile):
    process, log, output = profile
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()
    return output if output.exists() else None


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame):
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path.replace(str(ROOT) + '/', '')})"


def summarize_profile(path, top=25):
    """Inclusive and self share of samples per function, from py-spy's raw (collapsed) output."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        count = int(count)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; inclusive share per function (top {top}):"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append(f"  self share per function (top {top}):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


# --- the benchmark -------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="notifications to send (default 5000)")
    parser.add_argument("--batch", type=int, default=1000, help="notifications per bulk request, at most 1000")
    parser.add_argument("--threads", type=int, default=8, help="threads of the one worker process (default 8)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hub_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--timeout", type=float, default=600.0, help="total seconds before giving up (default 600)")
    parser.add_argument(
        "--profile",
        choices=["gil", "cpu", "idle"],
        help="record the worker with py-spy while it delivers: gil (the thread holding the GIL), "
        "cpu (threads on a CPU) or idle (every thread, waiting included)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.count < 1 or args.threads < 1 or not 1 <= args.batch <= 1000:
        parser.error("--count and --threads must be positive, --batch between 1 and 1000")
    return args


def register(client):
    user = {
        "username": "bench_user",
        "password": PASSWORD,
        "email": "bench_user@example.com",
        "first_name": "Bench",
        "last_name": "User",
    }
    response = client.post("/api/v1/auth/register/", json=user)
    if response.status_code != 201:
        raise BenchError(f"register answered {response.status_code}: {response.text[:500]}")
    response = client.post("/api/v1/auth/token/", json={"username": user["username"], "password": PASSWORD})
    if response.status_code != 200:
        raise BenchError(f"token answered {response.status_code}: {response.text[:500]}")
    return response.json()["token"]


def post_all(client, token, count, batch, deadline):
    """POST the notifications in batches; returns the seconds each request took."""
    headers = {"Authorization": f"Token {token}"}
    timings = []
    for start in range(0, count, batch):
        items = [
            {
                "title": f"Benchmark notification {n}",
                "message": f"Hello user{n}, this is benchmark notification {n}.",
                "recipient_type": "email",
                "recipient": f"user{n}@example.com",
                "priority": "normal",
            }
            for n in range(start, min(start + batch, count))
        ]
        began = time.perf_counter()
        response = client.post(
            "/api/v1/notifications/bulk/",
            json={"notifications": items},
            headers=headers,
            timeout=min(300.0, remaining(deadline)),
        )
        timings.append(time.perf_counter() - began)
        if response.status_code != 202 or response.json().get("count") != len(items):
            raise BenchError(f"bulk answered {response.status_code}: {response.text[:500]}")
    return timings


def status_counts(conn):
    return dict(conn.execute(f"SELECT status, count(*) FROM notify_notification {POSTED} GROUP BY status").fetchall())


def wait_final(conn, count, deadline, sink, hub):
    """Poll until every row is final; returns (counts, completed)."""
    last_print = 0.0
    while True:
        counts = status_counts(conn)
        done = sum(counts.get(s, 0) for s in FINAL_STATUSES)
        now = time.monotonic()
        if now - last_print >= 2.0 or done >= count:
            pending = {s: n for s, n in sorted(counts.items()) if s not in FINAL_STATUSES}
            print(f"  {done}/{count} final (sent {counts.get('sent', 0)}), waiting {pending}, sink {sink.received}")
            last_print = now
        if done >= count:
            return counts, True
        if now >= deadline:
            return counts, False
        hub.check_alive()
        time.sleep(0.25)


def measure(conn):
    rows = conn.execute(
        f"SELECT status, attempts, created_at, sending_at, sent_at FROM notify_notification {POSTED} ORDER BY id"
    ).fetchall()
    statuses = Counter(row[0] for row in rows)
    sent = [row for row in rows if row[0] == "sent"]
    result = {
        "rows": len(rows),
        "statuses": dict(statuses),
        "sent": len(sent),
        "failed": statuses.get("failed", 0),
        "retried": sum(1 for row in rows if row[1] > 1),
    }
    if not sent:
        return result
    first_created = min(row[2] for row in rows)
    first_sending = min(row[3] for row in rows if row[3] is not None)
    last_sent = max(row[4] for row in sent)
    end_to_end = (last_sent - first_created).total_seconds()
    worker_only = (last_sent - first_sending).total_seconds()
    latencies = sorted((row[4] - row[2]).total_seconds() for row in sent)
    result.update(
        {
            "end_to_end_seconds": end_to_end,
            "worker_seconds": worker_only,
            "deliveries_per_second": len(sent) / end_to_end if end_to_end > 0 else None,
            "worker_deliveries_per_second": len(sent) / worker_only if worker_only > 0 else None,
            "latency_p50": percentile(latencies, 0.50),
            "latency_p99": percentile(latencies, 0.99),
            "latency_max": latencies[-1],
        }
    )
    return result


def report(info):
    m, p, r = info["machine"], info["parameters"], info.get("result", {})

    def rate(value):
        return f"{value:8.1f} /s" if value is not None else "       - /s"

    def secs(value):
        return f"{value:7.2f} s" if value is not None else "      - s"

    print()
    print("== Notification throughput ==")
    print(f"machine      {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}")
    print(
        f"parameters   count={p['count']} batch={p['batch']} threads={p['threads']} "
        "(1 Daphne process, 1 worker process)"
    )
    print(f"services     PostgreSQL {info.get('postgres_version', '?')} {p['database_url']}, Redis {p['redis_url']}")
    if "post_seconds" in info:
        total = sum(info["post_seconds"])
        per_batch = ", ".join(f"{s:.2f}" for s in info["post_seconds"])
        print(
            f"posting      {total:.2f} s for {p['count']} ({p['count'] / total:.0f}/s accepted); per batch: {per_batch}"
        )
    if r:
        print(
            f"outcome      {r['rows']} rows: sent {r['sent']}, failed {r['failed']}, "
            f"statuses {r['statuses']}, retried {r['retried']}; SMTP sink received {info.get('sink_received')}"
        )
    if r.get("sent"):
        print(
            f"throughput   {rate(r['deliveries_per_second'])}  end to end: sent / (last sent_at - first created_at)"
            f" = {r['sent']} / {r['end_to_end_seconds']:.2f} s"
        )
        print(
            f"             {rate(r['worker_deliveries_per_second'])}  worker only: sent / (last sent_at - first "
            f"sending_at) = {r['sent']} / {r['worker_seconds']:.2f} s"
        )
        print(
            f"latency      created_at -> sent_at: p50 {secs(r['latency_p50'])}, p99 {secs(r['latency_p99'])}, "
            f"max {secs(r['latency_max'])}"
        )
        verdict = "meets" if (r["deliveries_per_second"] or 0) >= TARGET_PER_SECOND else "is BELOW"
        print(f"target       {verdict} the target of {TARGET_PER_SECOND}/s end to end")
    cpu = info.get("cpu")
    if cpu:
        wall = cpu["wall"]
        print(
            f"CPU          over {wall:.1f} s from the first post to the end of polling; "
            f"machine busy {100 * cpu['machine_busy_fraction']:.0f}% of {m['nproc']} cores"
        )
        for name, seconds in sorted(cpu["parts"].items(), key=lambda kv: -kv[1]):
            print(f"             {name:15} {seconds:7.1f} s  ({100 * seconds / wall:5.1f}% of one core)")
    if info.get("profile_summary"):
        print(f"profile      py-spy ({p['profile']}) of the worker process: {info.get('profile_path')}")
        print(info["profile_summary"])
    print(f"logs         {info['log_dir']}")
    if info.get("error"):
        print(f"ERROR        {info['error']}")


def run(args):
    deadline = time.monotonic() + args.timeout
    db_name, maintenance_url = check_urls(args.database_url, args.redis_url, ("bench",), "redis://127.0.0.1:6379/9")
    log_dir = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    info = {
        "machine": machine(),
        "parameters": {
            "count": args.count,
            "batch": args.batch,
            "threads": args.threads,
            "database_url": args.database_url,
            "redis_url": args.redis_url,
            "profile": args.profile,
        },
        "log_dir": str(log_dir),
    }
    print(f"logs in {log_dir}")
    sink = hub = profile = None
    exit_code = 2
    try:
        info["postgres_version"] = reset_database(db_name, maintenance_url)
        redis.Redis.from_url(args.redis_url, socket_timeout=5).flushdb()
        sink = SmtpSink()
        print(f"SMTP sink on 127.0.0.1:{sink.port} (pid {sink.pid})")
        env = services_env(
            database_url=args.database_url,
            redis_url=args.redis_url,
            smtp_port=sink.port,
            secret_key="notify-throughput-bench-secret-key",
        )
        hub = Hub(env, log_dir)
        print("migrating ...")
        hub.manage("migrate", "--noinput", timeout=remaining(deadline))
        hub.start("web", *common.daphne_args(hub.port), "project.asgi:application")
        hub.start("worker", "manage.py", "rundramatiq", "--processes", "1", "--threads", str(args.threads))
        hub.wait_up(deadline)
        with httpx.Client(base_url=hub.url, timeout=10) as client:
            print(f"Daphne on {hub.url}, worker up; registering and posting {args.count} notifications ...")
            token = register(client)
            if args.profile:
                profile = start_profile(worker_child_pid(hub), "worker", log_dir, args.profile)
            exit_code = 1  # from here on, a failure still has something to report
            before = cpu_now(hub, sink)
            info["post_seconds"] = post_all(client, token, args.count, args.batch, deadline)
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            counts, completed = wait_final(conn, args.count, deadline, sink, hub)
            info["cpu"] = cpu_delta(before, cpu_now(hub, sink))
            if profile:
                path = stop_profile(profile)
                profile = None
                if path:
                    info["profile_path"] = str(path)
                    info["profile_summary"] = summarize_profile(path)
            time.sleep(0.5)  # let the sink count the last message
            info["sink_received"] = sink.received
            info["result"] = measure(conn)
        if not completed:
            info["error"] = f"timed out after {args.timeout:g} s with {counts} (of {args.count})"
        elif info["result"]["sent"] == args.count:
            exit_code = 0
        else:
            info["error"] = f"not every notification was sent: {info['result']['statuses']}"
    except RUN_ERRORS as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        info["error"] = "interrupted"
        exit_code = 130
    finally:
        if profile:
            stop_profile(profile)
        if hub:
            hub.stop()
        if sink:
            sink.stop()
    if "result" not in info and "post_seconds" in info:
        # Interrupted, out of time or an error after posting: report what the rows say.
        with contextlib.suppress(psycopg.Error), psycopg.connect(args.database_url, connect_timeout=5) as conn:
            info["result"] = measure(conn)
    report(info)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(common.main(parse_args, run))
