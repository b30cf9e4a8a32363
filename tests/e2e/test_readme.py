"""The README's API examples, run as a reader would: every ```bash block of
its API section, in order, in one shell, against a live hub just seeded.
Each curl's answer is checked, so the README cannot drift from the hub."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
# Refusals the README means to show: the verification code is a placeholder,
# and the notification it retries was sent, not failed.
EXPECTED_REFUSALS = {("POST", "/api/v1/auth/verify/"): 400, ("POST", "/api/v1/notifications/{id}/retry/"): 409}
# Every curl also writes its answer's status, method and URL to stderr.
CURL = """curl() { command curl -sS -w '%{stderr}ANSWER %{http_code} %{method} %{url_effective}\\n' "$@"; }"""


def _api_blocks(text):
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_readme_api_examples_run_top_to_bottom(hub, tmp_path):
    blocks = _api_blocks(README.read_text())
    assert len(blocks) >= 5
    script = "\n".join([CURL, *blocks]).replace("http://127.0.0.1:8000", hub.url)
    Path(tmp_path / "readme.sh").write_text(script)

    done = subprocess.run(["bash", str(tmp_path / "readme.sh")], capture_output=True, text=True, timeout=120)

    answers = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("ANSWER ")]
    assert len(answers) >= 30, done.stderr
    wrong = []
    for status, method, url in answers:
        path = re.sub(r"/[0-9]+/", "/{id}/", "/" + url.split("/", 3)[3].split("?")[0])
        expected = EXPECTED_REFUSALS.get((method, path))
        if (int(status) != expected) if expected else not 200 <= int(status) < 300:
            wrong.append(f"{method} {url} answered {status}")
    assert not wrong, "\n".join(wrong) + "\n\n" + done.stdout[-3000:] + done.stderr[-3000:]
