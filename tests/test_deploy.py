"""The production topology (docker-compose.yml, Dockerfile) agrees with the code
it runs, and the production settings pass Django's deployment checks."""

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.core.management import get_commands

from tests.helpers import procfile_entries

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# compose service -> the Procfile entry it runs
PROCFILE_SERVICES = {"web": "web", "worker": "worker", "sweeper": "sweeper"}
# Services built from the Dockerfile: the Procfile's processes and the one-off jobs.
APP_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
ONE_OFF_SERVICES = sorted(name for name, service in SERVICES.items() if service.get("restart") == "no")
# The port each image listens on, for URLs that point at it.
IMAGE_PORTS = {"postgres": 5432, "redis": 6379, "axllent/mailpit": 1025}
SETTINGS_VARIABLES = frozenset(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', (ROOT / "project" / "settings.py").read_text()))
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _stand_in(name):
    return f"required-{name}"


def compose_value(raw):
    """What compose makes of `raw` when the caller's environment sets nothing
    but the required variables: defaults filled in, required ones stood in for."""

    def expand(match):
        name, operator, argument = match.groups()
        if operator and operator.endswith("?"):
            return _stand_in(name)
        return argument if operator else ""

    return VARIABLE.sub(expand, str(raw))


def compose_env(service):
    return {name: compose_value(value) for name, value in SERVICES[service].get("environment", {}).items()}


def command_tokens(command):
    return shlex.split(command) if isinstance(command, str) else [str(token) for token in command]


def match_procfile(procfile_command, compose_command):
    """Whether the compose command is the Procfile's, token for token; a
    Procfile ${VAR:-default} takes any value compose gives it. Returns
    {VAR: the value compose gives it}."""
    expected, actual = shlex.split(procfile_command), command_tokens(compose_command)
    assert len(expected) == len(actual), f"{actual} is not {expected}"
    bound = {}
    for want, got in zip(expected, actual, strict=True):
        variable = VARIABLE.fullmatch(want)
        if not variable:
            assert got == want, f"{actual} is not {expected}: {got!r} should be {want!r}"
            continue
        same = VARIABLE.fullmatch(got)
        if same:
            # Left to the caller, as in the Procfile, and with the same default.
            assert same.groups() == variable.groups(), f"{got!r} should be {want!r}"
        bound[variable.group(1)] = compose_value(got)
    return bound


def web_port():
    return match_procfile(procfile_entries()["web"], SERVICES["web"]["command"])["PORT"]


def dockerfile_instructions():
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple((line.split(None, 1) + [""])[:2]) for line in lines if line and not line.startswith("#")]


def test_compose_services_run_the_procfile_commands():
    entries = procfile_entries()

    for service, entry in PROCFILE_SERVICES.items():
        match_procfile(entries[entry], SERVICES[service]["command"])
    assert set(PROCFILE_SERVICES.values()) == set(entries), "every Procfile process has a compose service"


def test_compose_web_listens_where_it_is_published_and_probed():
    bound = match_procfile(procfile_entries()["web"], SERVICES["web"]["command"])
    port = bound["PORT"]

    # All interfaces: inside its container, loopback is unreachable from the host.
    assert bound["HOST"] == "0.0.0.0"
    assert [str(p).rsplit(":", 1)[1] for p in SERVICES["web"]["ports"]] == [port]
    probe = SERVICES["web"]["healthcheck"]["test"]
    assert probe[probe.index("--port") + 1] == port


def test_compose_app_services_set_only_variables_the_settings_read():
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "HTTPS_ONLY"} <= SETTINGS_VARIABLES
    assert set(PROCFILE_SERVICES) <= set(APP_SERVICES)

    for service in APP_SERVICES:
        unread = set(compose_env(service)) - SETTINGS_VARIABLES
        assert not unread, f"{service} sets {sorted(unread)}, which project/settings.py never reads"


def test_compose_secrets_come_from_the_callers_environment():
    for service in APP_SERVICES:
        environment = SERVICES[service]["environment"]
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", environment["SECRET_KEY"])
        assert re.search(r"://hub:\$\{POSTGRES_PASSWORD:\?[^}]+\}@", environment["DATABASE_URL"])
        assert environment["TELEGRAM_BOT_TOKEN"] == "${TELEGRAM_BOT_TOKEN:-}"
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"])


def test_compose_defaults_are_production_ones():
    for service in APP_SERVICES:
        environment = compose_env(service)
        assert environment["DEBUG"] == "0"
        assert environment["HTTPS_ONLY"] == "1"
        assert "*" not in environment["ALLOWED_HOSTS"].split(",")


def test_compose_urls_point_at_services_that_listen_there():
    postgres = compose_env("postgres")

    for service in APP_SERVICES:
        environment = compose_env(service)
        for name in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
            url = urlsplit(environment[name])
            target = SERVICES.get(url.hostname)
            assert target, f"{service}: {name} names {url.hostname!r}, which is no service"
            image = target["image"].split(":")[0]
            assert url.port == IMAGE_PORTS[image], f"{service}: {name} port {url.port}, {image} listens on another"
        database = urlsplit(environment["DATABASE_URL"])
        assert database.scheme == "postgres"
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == postgres["POSTGRES_PASSWORD"]
        assert database.path == f"/{postgres['POSTGRES_DB']}"
        assert urlsplit(environment["EMAIL_URL"]).scheme == "smtp"


def test_compose_long_running_services_have_health_checks():
    assert ONE_OFF_SERVICES == ["migrate", "seed-demo"]

    for name, service in SERVICES.items():
        if name in ONE_OFF_SERVICES:
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_compose_health_checks_and_jobs_run_real_management_commands():
    commands = get_commands()
    kinds = {"web", "worker", "sweeper"}

    for name in [*PROCFILE_SERVICES, *ONE_OFF_SERVICES]:
        service = SERVICES[name]
        for tokens in (command_tokens(service["command"]), service.get("healthcheck", {}).get("test", [])[1:]):
            if tokens[:2] == ["python", "manage.py"]:
                assert tokens[2] in commands, f"{name}: no management command {tokens[2]!r}"
    for kind in kinds:
        probe = SERVICES[kind]["healthcheck"]["test"]
        assert probe[1:5] == ["python", "manage.py", "healthcheck", kind]


def test_compose_app_services_start_after_healthy_services_and_migrations():
    for service in PROCFILE_SERVICES:
        depends_on = SERVICES[service]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    # The worker is what sends the mail.
    assert SERVICES["worker"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert command_tokens(SERVICES["migrate"]["command"])[:3] == ["python", "manage.py", "migrate"]


def test_compose_demo_seeding_is_opt_in():
    seed = SERVICES["seed-demo"]

    assert command_tokens(seed["command"]) == ["python", "manage.py", "seed_demo"]
    assert seed["profiles"] == ["demo"]
    assert not any("seed-demo" in SERVICES[s].get("depends_on", {}) for s in SERVICES if s != "seed-demo")


def test_dockerfile_builds_a_non_root_image_from_base_requirements():
    instructions = dockerfile_instructions()
    by_name = [name.upper() for name, _ in instructions]

    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [args for name, args in instructions if name.upper() == "RUN"]
    assert any(re.search(r"\bpip install\b.*-r requirements/base\.txt", run) for run in runs)
    users = [args for name, args in instructions if name.upper() == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    assert by_name.index("USER") > max(i for i, name in enumerate(by_name) if name == "RUN")
    assert any("collectstatic" in run for run in runs)


def test_dockerfile_keeps_secrets_out_of_the_image():
    for name, args in dockerfile_instructions():
        if name.upper() in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY", args, flags=re.I), f"{name} {args}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "db.sqlite3*", "staticfiles"} <= set(ignored)


def test_dockerfile_exposes_and_runs_the_web_process():
    instructions = dict((name.upper(), args) for name, args in dockerfile_instructions())
    bound = match_procfile(procfile_entries()["web"], json.loads(instructions["CMD"]))

    assert bound["PORT"] == web_port()
    assert web_port() in instructions["EXPOSE"].split()


# ---- production settings, each in a fresh interpreter --------------------------------

PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "hub.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://hub.example.com",
}


def _run(tmp_path, args, **env):
    """manage.py or python -c with nothing from this environment the settings
    read (the suite's own HTTPS_ONLY=0 included), then `env`."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}", **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _deploy_check(tmp_path, **env):
    return _run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)


def _secret_key():
    return secrets.token_urlsafe(50)


def test_deploy_check_passes_with_production_settings(tmp_path):
    done = _deploy_check(tmp_path, **PRODUCTION, SECRET_KEY=_secret_key())

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_deploy_check_fails_with_https_only_off(tmp_path):
    done = _deploy_check(tmp_path, **PRODUCTION, SECRET_KEY=_secret_key(), HTTPS_ONLY="0")

    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


def test_deploy_check_passes_with_the_compose_environment(tmp_path):
    environment = compose_env("web")
    # The services' hosts exist only inside compose: a throwaway SQLite file
    # and embedded mode stand in for them.
    for name in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
        environment.pop(name)
    environment["SECRET_KEY"] = _secret_key()

    done = _deploy_check(tmp_path, **environment)

    assert done.returncode == 0, done.stdout + done.stderr


def test_settings_refuse_a_wildcard_allowed_host_when_debug_is_off(tmp_path):
    refused = _run(
        tmp_path, ["manage.py", "check"], DEBUG="0", SECRET_KEY=_secret_key(), ALLOWED_HOSTS="hub.example.com,*"
    )
    allowed = _run(tmp_path, ["manage.py", "check"], DEBUG="1", ALLOWED_HOSTS="*")

    assert refused.returncode != 0
    assert "ALLOWED_HOSTS must not contain '*' when DEBUG is off" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr


PRINT_SECURITY = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name) for name in (
    "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER")}))
"""


@pytest.mark.parametrize(
    ("env", "https_only"),
    [({"DEBUG": "0"}, True), ({"DEBUG": "1"}, False), ({"DEBUG": "0", "HTTPS_ONLY": "0"}, False)],
)
def test_https_only_is_on_unless_debug_or_switched_off(tmp_path, env, https_only):
    done = _run(tmp_path, ["-c", PRINT_SECURITY], SECRET_KEY=_secret_key(), **env)

    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["SECURE_SSL_REDIRECT"] is https_only
    assert values["SESSION_COOKIE_SECURE"] is https_only
    assert values["CSRF_COOKIE_SECURE"] is https_only
    assert (values["SECURE_HSTS_SECONDS"] > 0) is https_only


@pytest.mark.parametrize(("num_proxies", "header"), [("0", None), ("1", ["HTTP_X_FORWARDED_PROTO", "https"])])
def test_settings_trust_x_forwarded_proto_only_behind_trusted_proxies(tmp_path, num_proxies, header):
    done = _run(tmp_path, ["-c", PRINT_SECURITY], SECRET_KEY=_secret_key(), NUM_PROXIES=num_proxies)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["SECURE_PROXY_SSL_HEADER"] == header


REQUEST_OVER_HTTP = """
import json, sys, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="hub.example.com")
statuses = {}
for path in sys.argv[1:]:
    statuses[path] = client.get(path).status_code
statuses["proxied https"] = client.get("/api/v1/customers/", HTTP_X_FORWARDED_PROTO="https").status_code
print(json.dumps(statuses))
"""


def test_https_only_redirects_plain_http_except_internal_probes(tmp_path):
    paths = ["/api/v1/customers/", "/api/v1/health/", "/health/redis/", "/health/worker/", "/metrics"]

    done = _run(tmp_path, ["-c", REQUEST_OVER_HTTP, *paths], **PRODUCTION, SECRET_KEY=_secret_key(), NUM_PROXIES="1")

    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout)
    assert statuses.pop("/api/v1/customers/") == 301
    # Past the redirect, at the authentication it needs.
    assert statuses.pop("proxied https") == 401
    assert 301 not in statuses.values(), statuses


PRINT_DATABASE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({"options": settings.DATABASES["default"]["OPTIONS"],
                  "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"]}))
"""


def test_postgres_settings_use_a_pool_not_persistent_connections(tmp_path):
    done = _run(
        tmp_path,
        ["-c", PRINT_DATABASE],
        SECRET_KEY=_secret_key(),
        DATABASE_URL="postgres://hub:pw@db.internal:5432/hub",
        DATABASE_POOL_MAX_SIZE="7",
    )

    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["options"]["pool"]["max_size"] == 7
    assert values["options"]["pool"]["min_size"] >= 1
    assert values["conn_max_age"] == 0


@pytest.mark.django_db
def test_postgres_connections_come_from_the_pool_when_services_are_required():
    from django.db import connection

    from tests.conftest import service_unavailable

    if connection.vendor != "postgresql":
        service_unavailable("the suite runs on SQLite; DATABASE_URL does not point at PostgreSQL")
    assert connection.pool is not None
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
