"""The demo command end to end, small: real processes, real HTTP, its printed table parsed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
ROW = re.compile(r"^(inline|critical-path)\s+(\d+) ms\s+(\d+) ms\s+([\d.]+) req/s\s+(.+)$", re.MULTILINE)


@pytest.mark.slow
def test_the_demo_prints_both_modes_and_the_outbox(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env |= {"EXAMPLE_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "example_project.settings"}
    command = [
        sys.executable, "-m", "example_project.demo", "--signups", "6", "--crm-latency", "0.1", "--smtp-latency", "0",
        "--failure-rate", "0.3", "--workers", "2", "--timeout", "60",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr

    rows = {mode: (int(median), int(p99), float(rate), done) for mode, median, p99, rate, done in ROW.findall(output)}
    assert set(rows) == {"inline", "critical-path"}, output
    inline, critical = rows["inline"], rows["critical-path"]
    assert inline[0] >= 100  # every inline response waits for the CRM's 0.1 s
    assert critical[0] < inline[0]
    assert 0 < inline[0] <= inline[1] and 0 < critical[0] <= critical[1]
    assert inline[2] > 0 and critical[2] > 0
    assert inline[3] == "with each response"
    assert re.fullmatch(r"[\d.]+ s after the first request", critical[3]), critical[3]

    outbox = {
        name: int(n) for name, n in re.findall(r"^  (succeeded|failed|dead|coalesced)\s+(\d+)", output, re.MULTILINE)
    }
    assert outbox["succeeded"] + outbox["dead"] + outbox["coalesced"] == 18 and outbox["failed"] == 0, output
    assert outbox["coalesced"] < 6, output  # only stats recomputations coalesce, and the last one runs
    lost = int(re.search(r"^Inline, (\d+) side effects failed", output, re.MULTILINE)[1])
    contacts = int(re.search(r"^CRM: (\d+) contacts", output, re.MULTILINE)[1])
    assert contacts == 12 - lost - outbox["dead"]
    assert re.search(r"^SMTP sink: 12 welcome emails received$", output, re.MULTILINE), output
