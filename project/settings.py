"""Settings for the notification hub.

Every value that differs between machines comes from an environment variable
read here and nowhere else; `.env.example` lists them all. With neither
`DATABASE_URL` nor `REDIS_URL` set the hub runs embedded: SQLite, local-memory
cache and Channels' in-memory layer, in one process.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# A secret only has a default on a developer's machine.
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-do-not-use-in-production")
elif not env.str("SECRET_KEY", default=""):
    raise ImproperlyConfigured("Set the SECRET_KEY environment variable: it is required when DEBUG is off.")
else:
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
if not DEBUG and "*" in ALLOWED_HOSTS:
    # Any Host header would then be believed, in password-reset links and
    # redirects alike, and WebSocket origins would no longer be checked.
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must not contain '*' when DEBUG is off: list the host names the hub answers to, "
        "e.g. ALLOWED_HOSTS=hub.example.com."
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Reverse proxies in front of the hub. Their X-Forwarded-For entries give the
# client address (for throttling), and X-Forwarded-Proto says whether the
# client came over HTTPS: TLS usually ends at the proxy, so the hub itself only
# sees plain HTTP. Without a trusted proxy a client could forge either header,
# so both are ignored; a trusted proxy must overwrite what the client sent.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
if NUM_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Addresses and networks (CIDR) that may read /metrics without a token: the
# Prometheus servers. They are matched against the connection's own peer
# (REMOTE_ADDR), never X-Forwarded-For, which any client can write; behind a
# proxy every request seems to come from the proxy, so allow-list only scrapers
# that reach the hub directly, and give the others a staff token.
try:
    METRICS_ALLOWED_IPS = [
        ipaddress.ip_network(value.strip(), strict=False)
        for value in env.list("METRICS_ALLOWED_IPS", default=[])
        if value.strip()
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}") from None

# HTTPS only, on by default when DEBUG is off: plain-HTTP requests are
# redirected, cookies travel over HTTPS alone, and browsers are told (HSTS) to
# use nothing else for a year, on subdomains too. Off where the hub is reached
# over plain HTTP on purpose: the test suite, or a local run with DEBUG off.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=not DEBUG)
if HTTPS_ONLY:
    SECURE_SSL_REDIRECT = True
    # Probes inside the deployment (container health checks, Prometheus) talk
    # plain HTTP straight to the process; a redirect to HTTPS would fail them.
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^api/v1/health/$", r"^metrics/?$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Unset means embedded mode: no Redis anywhere.
REDIS_URL = env.str("REDIS_URL", default="")
# Requests, the worker and the sweeper wait at most this long for a Redis
# command; after a failure, the calls a request can do without (metrics,
# throttle counts, broker messages the sweeper sends again) are skipped for
# REDIS_RETRY_SECONDS.
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=0.5)
REDIS_RETRY_SECONDS = env.float("REDIS_RETRY_SECONDS", default=5.0)

# HTTP requests a web process runs at once, each in a thread of its own; the
# others wait their turn on the event loop. The GIL runs one thread at a time,
# so more threads only make every thread, the relay's and the sockets' event
# loop among them, wait longer for it.
HTTP_THREADS = env.int("HTTP_THREADS", default=2)
if HTTP_THREADS < 1:
    raise ImproperlyConfigured("HTTP_THREADS must be at least 1.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_yasg",
    "django_dramatiq",
    "core",
    "orders",
    "notify",
    "realtime",
    "frontend",
]

MIDDLEWARE = [
    # First: every request gets its id and its log line, whatever answers it.
    "core.logs.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body.
    "core.exceptions.body_size_middleware",
    # A connection the database dropped mid-request: 503, not 500.
    "core.exceptions.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files are not requests worth counting.
    "core.metrics.metrics_middleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool per process: web threads and worker threads borrow a connection
    # per request or message instead of opening one (CONN_MAX_AGE stays 0).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            # What a request waits for a connection before it is answered 503.
            "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=5.0),
        },
    }
    # The pool checks a connection before it lends it, so one the server
    # dropped (a restart, pg_terminate_backend) is replaced, not handed out.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE takes the write
    # lock at BEGIN so two writers queue on `timeout` instead of failing with
    # "database is locked" when one upgrades a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, so the Daphne processes that end-to-end tests start
    # share the test database; one per test run, so two runs never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "core.User"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Events older than this are pruned; a client resuming from before then is told to resync.
REALTIME_EVENT_RETENTION_DAYS = env.float("REALTIME_EVENT_RETENTION_DAYS", default=7.0)
# Seconds between the server's heartbeat messages on every socket.
REALTIME_HEARTBEAT_SECONDS = env.float("REALTIME_HEARTBEAT_SECONDS", default=25.0)
# Bytes a web process holds for one socket whose client does not read them
# (beyond the kernel's own buffer); past it the socket is dropped, and the
# client resumes from its last_event_id when it reconnects. Under Daphne.
REALTIME_SOCKET_BUFFER_BYTES = env.int("REALTIME_SOCKET_BUFFER_BYTES", default=4 * 1024 * 1024)
if REALTIME_SOCKET_BUFFER_BYTES < 1:
    raise ImproperlyConfigured("REALTIME_SOCKET_BUFFER_BYTES must be at least 1.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Daphne serves no static files; WhiteNoise does, straight from the apps'
# static folders while developing.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

TOKEN_TTL = timedelta(hours=env.float("TOKEN_TTL_HOURS", default=24))
REST_KNOX = {
    "TOKEN_TTL": TOKEN_TTL,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
# How long the code a registration mails for verifying the email works.
EMAIL_VERIFICATION_TTL = timedelta(hours=env.float("EMAIL_VERIFICATION_TTL_HOURS", default=24))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["core.input.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "core.filters.KnownQueryParams",
        "core.filters.FilterBackend",
        "core.filters.OrderingFilter",
    ],
    "EXCEPTION_HANDLER": "core.exceptions.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        # Per client address and, for logins, per username too, so guessing
        # one account's password from many addresses is slowed as well.
        "auth": env.str("AUTH_THROTTLE_RATE", default="10/minute"),
        "login_username": env.str("AUTH_THROTTLE_RATE", default="10/minute"),
        "notify_send": env.str("NOTIFY_THROTTLE_RATE", default="120/minute"),
        # Each resend is a mail to an address that may not be the caller's.
        "verify_resend": env.str("VERIFY_RESEND_THROTTLE_RATE", default="3/hour"),
    },
    "NUM_PROXIES": NUM_PROXIES,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SWAGGER_USE_COMPAT_RENDERERS = False
SWAGGER_SETTINGS = {
    "SECURITY_DEFINITIONS": {
        "Token": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` from POST /api/v1/auth/token/",
        }
    },
    "USE_SESSION_AUTH": False,
    "DEFAULT_AUTO_SCHEMA_CLASS": "core.schema.HubAutoSchema",
    # No badge from the online validator: the docs work offline.
    "VALIDATOR_URL": None,
}

# Background delivery. Services mode: a Redis broker shared by `rundramatiq`
# workers. Embedded mode: an in-memory broker whose worker runs inside the web
# process (see notify.embedded).
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker" if REDIS_URL else "dramatiq.brokers.stub.StubBroker",
    # Dramatiq builds its pool from the URL alone: the timeouts go in its query.
    "OPTIONS": (
        {
            "url": REDIS_URL
            + ("&" if "?" in REDIS_URL else "?")
            + f"socket_timeout={REDIS_TIMEOUT_SECONDS}&socket_connect_timeout={REDIS_TIMEOUT_SECONDS}"
        }
        if REDIS_URL
        else {}
    ),
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "notify.heartbeat.HeartbeatMiddleware",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# Retries of a notification after its first attempt, on transient errors.
NOTIFY_MAX_RETRIES = env.int("NOTIFY_MAX_RETRIES", default=5)
# Backoff before retry n: random between half and all of base * 2**(n-1), at most the cap.
NOTIFY_RETRY_BASE_SECONDS = env.float("NOTIFY_RETRY_BASE_SECONDS", default=2.0)
NOTIFY_RETRY_MAX_SECONDS = env.float("NOTIFY_RETRY_MAX_SECONDS", default=600.0)
# Notification ids per worker message: a batch is claimed together and sent
# over one SMTP connection.
NOTIFY_BATCH_SIZE = env.int("NOTIFY_BATCH_SIZE", default=50)
if NOTIFY_BATCH_SIZE < 1:
    raise ImproperlyConfigured("NOTIFY_BATCH_SIZE must be at least 1.")
# A worker writes its attempts every this many sends (and at least once a
# second): a worker killed mid-batch sends at most this many again per thread.
# Fewer costs throughput (docs/benchmarks.md).
NOTIFY_RECORD_EVERY = env.int("NOTIFY_RECORD_EVERY", default=5)
if NOTIFY_RECORD_EVERY < 1:
    raise ImproperlyConfigured("NOTIFY_RECORD_EVERY must be at least 1.")
# A row `sending` this long is taken to belong to a dead worker and is retried.
NOTIFY_SENDING_TIMEOUT_SECONDS = env.float("NOTIFY_SENDING_TIMEOUT_SECONDS", default=300.0)
# The sweeper's period, and how long a due row may wait in the queue before
# the sweeper enqueues it again.
NOTIFY_SWEEP_INTERVAL_SECONDS = env.float("NOTIFY_SWEEP_INTERVAL_SECONDS", default=30.0)
NOTIFY_STALE_AFTER_SECONDS = env.float("NOTIFY_STALE_AFTER_SECONDS", default=120.0)
# A worker that has not beaten for this long counts as gone.
WORKER_HEARTBEAT_TIMEOUT_SECONDS = 30.0

# Email: an SMTP URL such as smtp://user:password@mail.example.com:587/?tls=True.
_email = env.email_url("EMAIL_URL", default="smtp://127.0.0.1:25" if REDIS_URL else "consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Notification hub <hub@localhost>")

# Telegram Bot API. Without a token, DEBUG logs messages to the console and
# production fails them with the reason.
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_API_URL = env.str("TELEGRAM_API_URL", default="https://api.telegram.org").rstrip("/")
TELEGRAM_TIMEOUT = env.float("TELEGRAM_TIMEOUT", default=10.0)
# Telegram's own limits: one message a second per chat, thirty per bot.
TELEGRAM_CHAT_INTERVAL_SECONDS = env.float("TELEGRAM_CHAT_INTERVAL_SECONDS", default=1.0)
TELEGRAM_BOT_MESSAGES_PER_SECOND = env.float("TELEGRAM_BOT_MESSAGES_PER_SECOND", default=30.0)

# json: one object per line, for a log pipeline; text: for people.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logs.RequestIdFilter"},
        "redact_secrets": {"()": "core.logs.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {"()": "core.logs.json_formatter"},
        "text": {"()": "core.logs.text_formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # httpx logs each request's URL at INFO, and a Bot API URL carries the bot token.
        "httpx": {"level": "WARNING"},
        # Every request has its line from core.logs; Django's own "Not Found: …"
        # warnings would repeat it. Server errors still come with their traceback.
        "django.request": {"level": "ERROR"},
        # Django's default config gives `django` a console handler of its own
        # (DEBUG only) and a level; through the root instead, its records get
        # the format and the redaction, and LOG_LEVEL decides.
        "django": {"level": "NOTSET"},
    },
}
# dictConfig, and Python's warnings as log records, in the same format.
LOGGING_CONFIG = "core.logs.logging_configure"
