"""What a web process sets for itself at start."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowers its own soft limit, loads the web application as Daphne does, and
# prints the soft limit it then runs with.
WEB_PROCESS = """
import resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
import project.asgi
print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
"""


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 256, reason="the hard limit is 256 or lower")
def test_a_web_process_raises_its_open_files_soft_limit_to_the_hard_limit(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DEBUG="1", DJANGO_SETTINGS_MODULE="project.settings", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}")
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert f"soft {hard}\n" in done.stdout, done.stdout + done.stderr
    # It says what it got.
    assert f"Open files: soft limit {hard} (was 256), hard limit {hard}" in done.stdout + done.stderr
