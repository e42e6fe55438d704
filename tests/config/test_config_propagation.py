"""A config change committed in one process is served by another running process within seconds."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from config import registry
from tests.conftest import subprocess_database_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "oversight.correlation_window_seconds"
STARTUP_TIMEOUT_S = 60
PROPAGATION_LIMIT_S = 5.0

# Another process: reads the key in a loop through the registry, as a worker would, and prints
# {"t": wall-clock time, "value": ...} each time the value it is served changes.
WATCHER = textwrap.dedent(
    f"""
    import json, sys, time
    import django
    django.setup()
    from config import registry
    last = object()
    while True:
        value = registry.get({KEY!r})
        if value != last:
            print(json.dumps({{"t": time.time(), "value": value}}), flush=True)
            last = value
        time.sleep(0.02)
    """
)


def watcher_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "CONFIG_REFRESH_SECONDS"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",  # the production code path, with the default refresh interval
        DATABASE_URL=subprocess_database_url(),
        VIGIL_IGNORE_DOTENV="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def next_reading(lines: queue.Queue, timeout: float, process: subprocess.Popen, output: list[str]) -> dict:
    """The next JSON reading the watcher prints; skips any other output (it is kept for diagnosis)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        output.append(line)
        if line.startswith('{"t":'):
            return json.loads(line)
    log = "\n".join(output[-40:])
    pytest.fail(f"no reading from the watcher within {timeout} s (exit code {process.poll()}):\n{log}")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_committed_change_is_seen_by_another_process_within_5_seconds(admin_user):
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHER],
        cwd=PROJECT_ROOT,
        env=watcher_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip()) for line in process.stdout], daemon=True).start()
    output: list[str] = []
    try:
        initial = next_reading(lines, STARTUP_TIMEOUT_S, process, output)
        assert initial["value"] == 300

        registry.set(KEY, 120, user=admin_user, reason="propagation test")  # its own transaction: committed here
        committed_at = time.time()

        seen = next_reading(lines, PROPAGATION_LIMIT_S * 2, process, output)
        delay = seen["t"] - committed_at
        print(f"config change seen by the other process {delay:.3f} s after commit")
        assert seen["value"] == 120
        assert delay < PROPAGATION_LIMIT_S
    finally:
        process.kill()
        process.wait(timeout=10)
