"""Golden demo wall times (issue 10): investor ≤ 60 s, audit ≤ 5 min, each on a fresh database.

Each mode runs as `make demo` does — `manage.py migrate`, `collectstatic`, `manage.py demo` — in child
processes with Celery eager: the investor mode on a fresh SQLite file (a bare machine), the audit mode on a
fresh PostgreSQL database next to the benchmark database (writing its evidence package, then
`verify_evidence`). Wall time includes migrate, as a new user experiences it; the run alone is reported too.
Single runs: the targets are minutes, far above the machine's noise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import write_result

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGETS = {"investor": 60.0, "audit": 300.0}


def _manage(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - started


def _play(mode: str, database_url: str, evidence_dir: str) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(DATABASE_URL=database_url, VIGIL_IGNORE_DOTENV="1")
    total = _manage("migrate", "--noinput", env=env)
    total += _manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
    extra = ["--evidence", evidence_dir] if mode == "audit" else []
    run = _manage("demo", "--mode", mode, "--seed", "42", "--quiet", *extra, env=env)
    total += run
    if mode == "audit":
        package = next(Path(evidence_dir).glob("*.zip"))
        total += _manage("verify_evidence", str(package), env=env)
    return total, run


def _postgres_url(name: str) -> str:
    import environ
    import psycopg

    config = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], password=config["PASSWORD"] or None,
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    user = config["USER"] + (f":{config['PASSWORD']}" if config["PASSWORD"] else "")
    return f"postgres://{user}@{config['HOST']}:{config['PORT'] or 5432}/{name}"


def run() -> None:
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        measured = {
            "investor": _play("investor", f"sqlite:///{workdir}/demo.sqlite3", workdir),
            "audit": _play("audit", _postgres_url("vigil_bench_demo"), workdir),
        }
    where = {"investor": "SQLite, fresh file", "audit": "PostgreSQL, fresh database, evidence written and verified"}
    for mode, (total, alone) in measured.items():
        results.append(
            {
                "metric": f"{mode} demo, {where[mode]}: migrate + run (wall)",
                "value": round(total, 1),
                "unit": "s",
                "target": f"≤ {TARGETS[mode]:.0f} s",
                "ok": total <= TARGETS[mode],
            }
        )
        results.append({"metric": f"{mode} demo, the run alone", "value": round(alone, 1), "unit": "s"})
    load = os.getloadavg()[0]
    write_result(
        "demo",
        title="Golden demo: wall time of `make demo` on a fresh database (migrate + collectstatic + the run)",
        results=results,
        notes=f"Child processes, Celery eager, seed 42, single runs; load average {load:.1f} on 2 CPUs at the end.",
    )


if __name__ == "__main__":
    run()
