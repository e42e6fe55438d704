#!/usr/bin/env python
"""Run every benchmark (`make bench`) and regenerate docs/benchmarks.md.

Uses ``DATABASE_URL`` (PostgreSQL; `make bench` defaults to a `vigil_bench` database), which it DROPS and
re-creates so every run starts from empty tables, then migrates. Results go to bench/results/<name>.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["FUNCTION_METRICS_FLUSH_SECONDS"] = "0"  # benchmarks flush explicitly
os.environ.setdefault("VIGIL_IGNORE_DOTENV", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def recreate_database() -> None:
    """Drop and create the PostgreSQL database named in DATABASE_URL: every run starts from empty tables."""
    import environ
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("benchmarks run on PostgreSQL: set DATABASE_URL=postgres://user@host:5432/vigil_bench")
    config = environ.Env.db_url_config(url)
    with psycopg.connect(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], password=config["PASSWORD"] or None,
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        if config["NAME"] in {"postgres", "template0", "template1"}:
            sys.exit(f"refusing to drop the {config['NAME']!r} database; name a dedicated benchmark database")
        conn.execute(f'DROP DATABASE IF EXISTS "{config["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{config["NAME"]}"')


def main() -> None:
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    from bench import (
        bench_cicd_gate,
        bench_dashboard,
        bench_demo,
        bench_foundation,
        bench_hitl,
        bench_incidents,
        bench_observability,
        bench_oversight,
        bench_policy_lint,
        bench_predictive,
        bench_predictive_surface,
        bench_ratelimit,
    )
    from bench.harness import write_summary

    call_command("migrate", verbosity=0)
    benchmarks = {"foundation": bench_foundation.run, "oversight": bench_oversight.run, "hitl": bench_hitl.run}
    benchmarks["incidents"] = bench_incidents.run
    benchmarks["ratelimit"] = bench_ratelimit.run
    benchmarks["policy_lint"] = bench_policy_lint.run
    benchmarks["cicd_gate"] = bench_cicd_gate.run
    benchmarks["observability"] = bench_observability.run
    benchmarks["dashboard"] = bench_dashboard.run
    benchmarks["predictive_surface"] = bench_predictive_surface.run
    benchmarks["predictive"] = bench_predictive.run
    benchmarks["predict_backtest"] = bench_predictive.run_backtest
    benchmarks["demo"] = bench_demo.run
    selected = sys.argv[1:] or list(benchmarks)
    for name in selected:
        print(f"== {name}")
        benchmarks[name]()
    print(f"summary written to {write_summary().relative_to(ROOT)}")


if __name__ == "__main__":
    main()
