"""Real Celery worker processes for end-to-end tests (PostgreSQL + Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config.celery import app as celery_app
from tests.conftest import subprocess_database_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 45


def worker_environment(**overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": subprocess_database_url(),
        "VIGIL_IGNORE_DOTENV": "1",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "FUNCTION_METRICS_FLUSH_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


@dataclass
class WorkerProcess:
    """A `celery worker` subprocess consuming its own private queue; its output is kept for diagnosis."""

    queue: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.output.append(line.rstrip())
            if " ready." in line:
                self.ready.set()

    def log(self) -> str:
        return "\n".join(self.output[-60:])

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement, no cleanup — a crashed or OOM-killed worker."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM): children finish their task and flush their metrics."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_worker(*, concurrency: int = 1, pool: str = "prefork", queue: str | None = None, **env: str) -> WorkerProcess:
    """Start a worker on ``queue`` (a fresh private one by default; pass an old worker's queue to
    restart it). What the worker sends itself (a follow-up task) goes to the same private queue, so
    nothing of the test touches a shared queue of the broker."""
    queue = queue or f"e2e-{uuid.uuid4().hex[:10]}"
    env.setdefault("CELERY_ROUTE_ALL_TO_QUEUE", queue)
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", f"--pool={pool}",
        f"--concurrency={concurrency}", "-Q", queue, "-n", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=worker_environment(**env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker = WorkerProcess(queue=queue, process=process)
    threading.Thread(target=worker._pump, daemon=True).start()
    if not worker.ready.wait(READY_TIMEOUT_S):
        worker.stop(timeout=5)
        pytest.fail(f"celery worker did not become ready in {READY_TIMEOUT_S} s:\n{worker.log()}")
    return worker


@contextmanager
def private_worker(*, concurrency: int = 1) -> Iterator[WorkerProcess]:
    """A real worker on its own queue, with eager mode off while it runs (tasks are really sent)."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    worker = start_worker(concurrency=concurrency)
    try:
        yield worker
    finally:
        worker.stop()
        celery_app.conf.task_always_eager = eager


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[WorkerProcess]:
    """A real worker on Redis + the test PostgreSQL database; tasks sent from the test go to its queue."""
    with private_worker() as worker:
        yield worker


@contextmanager
def routed_to(queue: str) -> Iterator[None]:
    """Send every task the code under test sends (``delay``/``apply_async`` without a queue) to
    ``queue`` — really sent, not run eagerly — so a private test worker receives it and no shared
    queue is touched."""
    routes, eager = celery_app.conf.task_routes, celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False

    def install(table) -> None:
        celery_app.conf.task_routes = table
        celery_app.amqp.flush_routes()
        celery_app.amqp.__dict__.pop("router", None)  # a cached_property built from the old table

    install(({"*": {"queue": queue}},))
    try:
        yield
    finally:
        install(routes)
        celery_app.conf.task_always_eager = eager


@pytest.fixture
def browser_page():
    """A Chromium page that records JavaScript errors in ``page.js_errors``."""
    from tests.e2e.browser import chromium_page

    yield from chromium_page()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = ""):
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout} s")
