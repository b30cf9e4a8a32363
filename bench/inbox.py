"""The in-app inbox's reads at size: counts and first pages in under 5 ms of database time.

    .venv/bin/python bench/inbox.py [--users 10000] [--messages 1000000] [--runs 20] [--keep]

Recreates the PostgreSQL database `hub_bench_inbox` on 127.0.0.1 (it touches
no other database and no Redis), migrates the hub into it and fills it with
SQL: `users` accounts and `messages` inbox messages, ids and created_at
rising together over a year. Five heavy users: four share every 4th message
throughout the year (about 59,000 each at the default size), and one got a
burst of 5 % of all messages (50,000) at 10-15 % of the year and nothing
since, as an account flooded by failure alerts during an old incident. The
rest go at random to the other users (about 71 each, nearly all between 50
and 100). Of all messages 5 % are unseen, 7 % seen but unread, 78 % read and
10 % archived (read first). Each user gets the Inbox counts row its messages
imply; then VACUUM ANALYZE.

For a typical user (the median message count), the heaviest and the burst
user, the script calls the hub's API in process (Django's test client,
force_authenticate) and captures the SQL it sends to the notify_inbox*
tables for GET /api/v1/inbox/counts/, GET /api/v1/inbox/ (the first page),
?unread=true and ?archived=true. Each statement then runs `runs` times under
EXPLAIN (ANALYZE, BUFFERS); database time is planning + execution.

Anchors, in the same run: the counts as COUNT(*) FILTER over the user's kept
messages (the design without a counts row), and each page's own statement
in a transaction, rolled back, that dropped the partial indexes
(notify_inbox_kept, notify_inbox_unread), then in one that dropped those and
the unique (user, number) constraint's index too, leaving the table no index
that starts with the user. Each page also
runs with `SET LOCAL random_page_cost = 1.1` (the server's default is 4), a
setting that changes the planner's choice for the burst user.

The database is dropped at the end unless --keep, which also reuses a filled
one. Exit status: 0 when every read's median is under the target, 1 when one
is not, 2 when the setup failed.
"""

import argparse
import os
import re
import subprocess
import sys
import warnings
from statistics import median

import common
import psycopg
from common import PYTHON, ROOT, RUN_ERRORS, BenchError, machine, reset_database
from psycopg import sql

DB_NAME = "hub_bench_inbox"
MAINTENANCE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
HUB_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "SECRET_KEY": "inbox-bench-secret-key-long-enough-for-django-checks",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "HTTPS_ONLY": "0",  # the test client speaks plain HTTP
    "LOG_LEVEL": "WARNING",  # no log line per request
    "DJANGO_SETTINGS_MODULE": "project.settings",
}
HEAVY_USERS = 5  # the last of them is the burst user
BURST = (0.10, 0.15)  # the burst user's share of the ids
TARGET_MS = 5.0
READS = {
    "counts": "/api/v1/inbox/counts/",
    "first page": "/api/v1/inbox/",
    "unread page": "/api/v1/inbox/?unread=true",
    "archived page": "/api/v1/inbox/?archived=true",
}
PARTIAL = ["notify_inbox_kept", "notify_inbox_unread"]
DROP = "DROP INDEX {}"
# Statements run first, in the transaction each variant's measurement rolls back.
PAGE_VARIANTS = {
    "no partial indexes": [DROP.format(index) for index in PARTIAL],
    "no (user, …) index": [
        "ALTER TABLE notify_inboxmessage DROP CONSTRAINT notify_inbox_number_unique",
        *[DROP.format(index) for index in PARTIAL],
    ],
    "random_page_cost 1.1": ["SET LOCAL random_page_cost = 1.1"],
}
PLANNING = re.compile(r"Planning Time: ([\d.]+) ms")
EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")

USERS_SQL = """
INSERT INTO core_user (id, password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
SELECT i, '!', false, 'inbox' || i, '', '', 'inbox' || i || '@example.com', false, true,
       now() - interval '400 days'
FROM generate_series(1, {users}) AS i
"""
# r picks the state: < 0.05 unseen, < 0.12 seen but unread, >= 0.90 archived, the rest read.
MESSAGES_SQL = """
INSERT INTO notify_inboxmessage (id, user_id, number, kind, title, message, created_at, seen_at, read_at,
                                 archived_at)
SELECT i, user_id, row_number() OVER (PARTITION BY user_id ORDER BY i),
       CASE WHEN i % 10 < 6 THEN 'order_status_changed' WHEN i % 10 < 9 THEN 'order_created' ELSE 'manual' END,
       'Order #' || (100000 + i % 90000) || ' is now shipped',
       'Your order #' || (100000 + i % 90000) || ' moved from confirmed to shipped. Follow it from your orders page.',
       created_at,
       CASE WHEN r >= 0.05 THEN created_at + interval '2 hours' END,
       CASE WHEN r >= 0.12 THEN created_at + interval '3 hours' END,
       CASE WHEN r >= 0.90 THEN created_at + interval '1 day' END
FROM (
    SELECT i, random() AS r,
           CASE WHEN i > {burst_from} AND i <= {burst_to} THEN {heavy}
                WHEN i % 4 = 0 THEN 1 + (i / 4) % ({heavy} - 1)
                ELSE {heavy} + 1 + floor(random() * ({users} - {heavy}))::int END AS user_id,
           now() - interval '365 days' + i * (interval '365 days' / {messages}) AS created_at
    FROM generate_series(1, {messages}) AS i
) AS m
"""
INBOX_SQL = """
INSERT INTO notify_inbox (user_id, unseen, unread, delivered)
SELECT u.id, count(m.id) FILTER (WHERE m.archived_at IS NULL AND m.seen_at IS NULL),
       count(m.id) FILTER (WHERE m.archived_at IS NULL AND m.read_at IS NULL), count(m.id)
FROM core_user AS u LEFT JOIN notify_inboxmessage AS m ON m.user_id = u.id
GROUP BY u.id
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="accounts to create (default 10,000)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="inbox messages (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=20, help="EXPLAIN ANALYZE runs of each statement (default 20)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"reuse {DB_NAME} if it is already filled (whatever its size), and leave it in place at the end",
    )
    args = parser.parse_args(argv)
    if args.users <= 2 * HEAVY_USERS or args.messages < args.users or args.runs < 1:
        parser.error(f"--users must be over {2 * HEAVY_USERS}, --messages at least --users, --runs at least 1")
    return args


def _hub_env():
    env = {**os.environ, **HUB_ENV}
    env.pop("REDIS_URL", None)  # embedded mode: no Redis is touched
    return env


def prepare(args):
    """Create, migrate and fill the database, or reuse it with --keep; the server's version."""
    with psycopg.connect(MAINTENANCE_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        version = conn.execute("SHOW server_version").fetchone()[0]
    if not (args.keep and exists):
        reset_database(DB_NAME, MAINTENANCE_URL)
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=_hub_env(), capture_output=True, text=True
    )
    if done.returncode:
        raise BenchError(f"manage.py migrate failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        if args.keep and conn.execute("SELECT EXISTS (SELECT FROM notify_inboxmessage)").fetchone()[0]:
            print(f"reusing the filled {DB_NAME}")
            return version
        print(f"filling {DB_NAME}: {args.users:,} users, {args.messages:,} messages ...", flush=True)
        numbers = {name: sql.Literal(value) for name, value in vars(args).items() if name in ("users", "messages")}
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(sql.SQL(USERS_SQL).format(**numbers))
        conn.execute("SELECT setseed(0.42)")
        burst = [sql.Literal(int(share * args.messages)) for share in BURST]
        messages = sql.SQL(MESSAGES_SQL).format(
            heavy=sql.Literal(HEAVY_USERS), burst_from=burst[0], burst_to=burst[1], **numbers
        )
        conn.execute(messages)
        conn.execute(INBOX_SQL)
        for table in ("core_user", "notify_inboxmessage"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.execute("VACUUM ANALYZE")
    return version


def describe(conn):
    """Print the sizes and the users' spread; the users measured ({label: (id, messages)})."""
    users, messages, size = conn.execute(
        "SELECT (SELECT count(*) FROM core_user), (SELECT count(*) FROM notify_inboxmessage),"
        " pg_size_pretty(pg_total_relation_size('notify_inboxmessage'))"
    ).fetchone()
    per_user = conn.execute(
        "SELECT u.id, count(m.id) AS n, max(m.id) AS newest FROM core_user AS u"
        " LEFT JOIN notify_inboxmessage AS m ON m.user_id = u.id GROUP BY u.id ORDER BY n, u.id"
    ).fetchall()
    counts = [n for _, n, _ in per_user]
    light = counts[:-HEAVY_USERS] if len(counts) > HEAVY_USERS else counts
    print(
        f"{users:,} users, {messages:,} messages ({size} with indexes); messages a user: "
        f"min {counts[0]}, 5th-95th percentile {light[len(light) // 20]}-{light[len(light) * 19 // 20]}, "
        f"median {counts[len(counts) // 2]}, the {HEAVY_USERS} heaviest {', '.join(map(str, counts[-HEAVY_USERS:]))}"
    )
    states = conn.execute(
        "SELECT count(*) FILTER (WHERE archived_at IS NULL AND seen_at IS NULL),"
        " count(*) FILTER (WHERE archived_at IS NULL AND seen_at IS NOT NULL AND read_at IS NULL),"
        " count(*) FILTER (WHERE archived_at IS NULL AND read_at IS NOT NULL),"
        " count(*) FILTER (WHERE archived_at IS NOT NULL) FROM notify_inboxmessage"
    ).fetchone()
    print("states: unseen {:,}, seen but unread {:,}, read {:,}, archived {:,}".format(*states))
    burst = min(per_user[-HEAVY_USERS:], key=lambda row: row[2])  # of the heavy users, the one quiet longest
    print(f"the burst user #{burst[0]}: newest message #{burst[2]:,}")
    return (
        users,
        messages,
        {"typical": per_user[len(per_user) // 2][:2], "heaviest": per_user[-1][:2], "burst": burst[:2]},
    )


def django_setup():
    warnings.filterwarnings("ignore", "No directory at", UserWarning)  # no collectstatic here
    os.environ.update(HUB_ENV)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def hub_statements(user_id):
    """{read: [SQL the hub sends to the notify_inbox* tables]} for the user, the
    naive count's SQL, and what each read answered."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count, Q
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from notify.models import InboxMessage

    user = get_user_model().objects.get(pk=user_id)
    client = APIClient(SERVER_NAME="127.0.0.1")
    client.force_authenticate(user)
    statements, answers = {}, {}
    for name, path in READS.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        if response.status_code != 200:
            raise BenchError(f"GET {path} answered {response.status_code}: {response.content[:300]}")
        statements[name] = [q["sql"] for q in queries if "notify_inbox" in q["sql"]]
        if not statements[name]:
            raise BenchError(f"GET {path} sent no statement to the notify_inbox* tables")
        body = response.json()
        answers[name] = body if name == "counts" else f"{len(body['results'])} rows"
    with CaptureQueriesContext(connection) as queries:
        naive = InboxMessage.objects.filter(user=user, archived_at__isnull=True).aggregate(
            unseen=Count("id", filter=Q(seen_at__isnull=True)), unread=Count("id", filter=Q(read_at__isnull=True))
        )
    if naive != answers["counts"]:
        raise BenchError(f"the counts row {answers['counts']} is not what the messages say: {naive}")
    return statements, queries[-1]["sql"], answers


def explain(conn, statements, runs, before=()):
    """Each statement `runs` times under EXPLAIN (ANALYZE, BUFFERS), in a
    transaction that runs `before` first and is rolled back at the end:
    {planning, execution, database: [ms per run, summed over the statements], plans}."""
    result = {"planning": [], "execution": [], "database": [], "plans": []}
    with conn.transaction(force_rollback=True):
        for statement in before:
            conn.execute(statement)
        for _ in range(runs):
            planning = execution = 0.0
            result["plans"] = []
            for statement in statements:
                plan = "\n".join(row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement))
                planning += float(PLANNING.search(plan)[1])
                execution += float(EXECUTION.search(plan)[1])
                result["plans"].append(plan)
            result["planning"].append(planning)
            result["execution"].append(execution)
            result["database"].append(planning + execution)
    return result


def _figures(result):
    return (
        f"plan {median(result['planning']):.3f}  exec {median(result['execution']):.3f}  "
        f"db {median(result['database']):.3f} (max {max(result['database']):.3f}) ms"
    )


def measure(conn, who, runs):
    """{(read, user label): {"hub": result, anchor or variant: result}}, printing each plan."""
    results = {}
    for label, (user_id, count) in who.items():
        statements, naive, answers = hub_statements(user_id)
        print(f"\n== {label} user #{user_id}, {count:,} messages: counts {answers['counts']}, ", end="")
        print(", ".join(f"{name} {answers[name]}" for name in READS if name != "counts"))
        for name in READS:
            measured = {"hub": explain(conn, statements[name], runs)}
            if name == "counts":
                measured["COUNT(*) over the messages"] = explain(conn, [naive], runs)
            else:
                for variant, before in PAGE_VARIANTS.items():
                    measured[variant] = explain(conn, statements[name], runs, before=before)
            results[name, label] = measured
            for variant, result in measured.items():
                print(f"\n-- {name}, {label} user, {variant}: {_figures(result)}")
                print("\n\n".join(result["plans"]))
    return results


def report(results, users, messages, runs):
    print(f"\n{messages:,} messages, {users:,} users; medians of {runs} runs; database = planning + execution, ms")
    print(f"{'read':<14} {'user':<9} {'hub plan':>8} {'exec':>7} {'db':>7} {'db max':>7}   others: db (hub / it)")
    met_all = True
    for (name, label), measured in results.items():
        hub = measured["hub"]
        db = median(hub["database"])
        others = "; ".join(
            f"{variant} {median(r['database']):.3f} ({db / median(r['database']):.2f})"
            for variant, r in measured.items()
            if variant != "hub"
        )
        print(
            f"{name:<14} {label:<9} {median(hub['planning']):>8.3f} {median(hub['execution']):>7.3f} "
            f"{db:>7.3f} {max(hub['database']):>7.3f}   {others}"
        )
    print()
    for (name, label), measured in results.items():
        db = median(measured["hub"]["database"])
        met_all &= db < TARGET_MS
        verdict = "MET    " if db < TARGET_MS else "NOT MET"
        print(f"  {verdict}  {name}, {label} user: database time median {db:.3f} ms (target < {TARGET_MS:g} ms)")
    return met_all


def _code():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + (" with working-tree changes" if dirty.stdout.strip() else "")


def run(args):
    exit_code, django_ready = 2, False
    try:
        version = prepare(args)
        print(f"machine: {machine()}, PostgreSQL {version}, code {_code()}")
        django_setup()
        django_ready = True
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            users, messages, who = describe(conn)
            results = measure(conn, who, args.runs)
        exit_code = 0 if report(results, users, messages, args.runs) else 1
    except RUN_ERRORS as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        exit_code = 130
    finally:
        if django_ready:
            from django.db import connection

            connection.close_pool()
        if not args.keep:
            with psycopg.connect(MAINTENANCE_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
    return exit_code


if __name__ == "__main__":
    sys.exit(common.main(parse_args, run))
