"""DB-backed rate limiter benchmark (issue 6), on PostgreSQL.

1. Decision overhead per request: the same authenticated ``GET /api/v1/teams`` through the full Django
   stack (middleware, JWT, view, JSON), once with ``VigilRateThrottle`` and once with the view's
   throttles removed, in interleaved rounds; p50/p95 of each and the difference of the medians.
   Target: overhead p50 ≤ 1 ms.
2. The decision alone: ``rate_limit_for`` + ``rate_limit_hit`` (the one upsert) per call, p50/p95.
3. Throughput with 8 concurrent client threads (own connections): decisions per second, for 8 distinct
   callers and for one caller shared by all 8 threads (every upsert contends for the same row).
"""

from __future__ import annotations

import statistics
import threading
import time

from django.db import connection
from django.test import Client

from bench.harness import write_result

ROUNDS = 7
REQUESTS_PER_ROUND = 300
DECISIONS = 3_000
THREADS = 8
THROUGHPUT_SECONDS = 3.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup():
    from rest_framework_simplejwt.tokens import RefreshToken

    from config import registry
    from governance.choices import Role
    from governance.models import Team, User

    team, _ = Team.objects.get_or_create(slug="bench-ratelimit", defaults={"name": "Bench rate limit"})
    admin, created = User.objects.get_or_create(username="bench-rl-admin", defaults={"email": "rl@example.com"})
    if created:
        from django.contrib.auth.models import Group

        admin.groups.add(Group.objects.get(name=Role.ADMIN))
        admin.teams.add(team)
    limits = registry.get("ratelimit.limits")
    limits["default"] = {"limit": 1_000_000, "window_seconds": 60}  # measure the decision, never a 429
    registry.set("ratelimit.limits", limits, user=admin, reason="benchmark")
    return admin, str(RefreshToken.for_user(admin).access_token)


def _request_round(client: Client, token: str, *, throttled: bool) -> list[float]:
    from governance.api.views import TeamViewSet

    # The baseline is the very same view with its throttle list emptied (DRF reads it per request).
    saved = TeamViewSet.throttle_classes
    if not throttled:
        TeamViewSet.throttle_classes = ()
    samples = []
    try:
        for _ in range(REQUESTS_PER_ROUND):
            started = time.perf_counter()
            response = client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Bearer {token}")
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
            assert ("RateLimit-Limit" in response) == throttled
    finally:
        TeamViewSet.throttle_classes = saved
    return samples


def _decisions(admin) -> list[float]:
    from governance.services.ratelimit import rate_limit_for, rate_limit_hit

    samples = []
    for _ in range(DECISIONS):
        started = time.perf_counter()
        limit, window = rate_limit_for(admin, "default")
        rate_limit_hit(key=f"user:{admin.pk}", group="default", limit=limit, window_seconds=window)
        samples.append(time.perf_counter() - started)
    return samples


def _throughput(*, shared_key: bool) -> float:
    from governance.services.ratelimit import rate_limit_hit

    barrier = threading.Barrier(THREADS)
    counts = [0] * THREADS
    errors: list[BaseException] = []

    def client(index: int) -> None:
        key = "user:bench-shared" if shared_key else f"user:bench-{index}"
        try:
            barrier.wait()
            deadline = time.perf_counter() + THROUGHPUT_SECONDS
            while time.perf_counter() < deadline:
                rate_limit_hit(key=key, group="bench", limit=1_000_000, window_seconds=86_400)
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(counts) / THROUGHPUT_SECONDS


def run() -> None:
    admin, token = _setup()
    client = Client()
    _request_round(client, token, throttled=True)  # warm-up: imports, config snapshot, plans
    _request_round(client, token, throttled=False)
    limited, bare = [], []
    for _ in range(ROUNDS):
        limited += _request_round(client, token, throttled=True)
        bare += _request_round(client, token, throttled=False)
    decisions = _decisions(admin)
    distinct = _throughput(shared_key=False)
    shared = _throughput(shared_key=True)

    limited_p50, bare_p50 = statistics.median(limited), statistics.median(bare)
    overhead = (limited_p50 - bare_p50) * 1000
    decision_p50 = statistics.median(decisions) * 1000
    results = [
        {
            "metric": "limiter overhead per request, p50 (throttled − unthrottled median)",
            "value": overhead,
            "unit": "ms",
            "target": "≤ 1 ms",
            "ok": overhead <= 1.0,
        },
        {"metric": "GET /api/v1/teams with the limiter, p50", "value": limited_p50 * 1000, "unit": "ms"},
        {"metric": "GET /api/v1/teams with the limiter, p95", "value": _percentile(limited, 0.95) * 1000, "unit": "ms"},
        {"metric": "baseline: same request without the throttle, p50", "value": bare_p50 * 1000, "unit": "ms"},
        {
            "metric": "baseline: same request without the throttle, p95",
            "value": _percentile(bare, 0.95) * 1000,
            "unit": "ms",
        },  # fmt: skip
        {
            "metric": "decision alone (config lookup + one upsert), p50",
            "value": decision_p50,
            "unit": "ms",
            "target": "≤ 1 ms",
            "ok": decision_p50 <= 1.0,
        },
        {"metric": "decision alone, p95", "value": _percentile(decisions, 0.95) * 1000, "unit": "ms"},
        {
            "metric": f"throughput, {THREADS} threads, {THREADS} distinct callers",
            "value": distinct,
            "unit": "decisions/s",
        },  # fmt: skip
        {
            "metric": f"throughput, {THREADS} threads, one shared caller (same row)",
            "value": shared,
            "unit": "decisions/s",
        },  # fmt: skip
    ]
    for row in results:
        print(f"  {row['metric']}: {row['value']:.3f} {row['unit']}")
    write_result(
        "ratelimit",
        title="Rate limiter: per-request overhead and concurrent throughput",
        results=results,
        notes=(
            f"Full-stack GET /api/v1/teams (JWT, admin user, Django test client in-process) in {ROUNDS} interleaved "
            f"rounds of {REQUESTS_PER_ROUND} requests with VigilRateThrottle and with the view's throttles emptied; "
            "the overhead is the difference of the two medians. The decision is one INSERT … ON CONFLICT DO "
            "UPDATE … RETURNING on the UNLOGGED rate_limits table using clock_timestamp(), in autocommit. "
            f"Throughput: {THREADS} threads with their own connections calling rate_limit_hit for "
            f"{THROUGHPUT_SECONDS:.0f} s, with distinct callers and with one caller (worst case: every upsert "
            "waits for the same row lock)."
        ),
    )
