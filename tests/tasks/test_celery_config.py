"""The Celery application: queues, routing by task name, delivery guarantees, and the one task decorator."""

from __future__ import annotations

import pytest

from config.celery import app
from tasks.base import VigilTask, is_instrumented, vigil_task
from tasks.kpis import project_tasks

QUEUES = {"default", "events", "assist", "lifecycle", "predict"}


def queue_for(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("oversight.process_batch", "events"),
        ("oversight.sweep_outbox", "events"),
        ("hitl.assist_pending", "assist"),
        ("hitl.apply_auto_approval", "assist"),
        ("incidents.lifecycle_tick", "lifecycle"),
        ("governance.predict", "predict"),
        ("governance.predict_system_risk", "predict"),
        ("governance.audit_verify", "default"),
        ("governance.ratelimit_cleanup", "default"),
        ("tasks.canary", "default"),
    ],
)
def test_tasks_are_routed_to_their_queue_by_name_prefix(task_name, queue):
    assert queue_for(task_name) == queue


def test_a_name_that_only_resembles_a_prefix_goes_to_the_default_queue():
    assert queue_for("oversightful.task") == "default"
    assert queue_for("hitlx.task") == "default"


def test_every_queue_is_declared_with_a_direct_exchange_of_its_own_name():
    queues = {queue.name: queue for queue in app.conf.task_queues}

    assert set(queues) == QUEUES
    assert app.conf.task_default_queue == "default"
    for name, queue in queues.items():
        assert queue.exchange.name == name
        assert queue.exchange.type == "direct"
        assert queue.routing_key == name


def test_every_routed_queue_is_declared():
    routed = {queue_for(name) for name in ("oversight.x", "hitl.x", "incidents.x", "governance.predict", "x.y")}

    assert routed == QUEUES


def test_a_task_is_acknowledged_after_it_ran_and_requeued_when_its_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_messages_are_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_tasks_have_a_soft_time_limit_below_the_hard_one():
    assert app.conf.task_soft_time_limit
    assert app.conf.task_time_limit
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_project_tasks_inherit_the_delivery_guarantees():
    for name, task in project_tasks().items():
        assert task.acks_late is True, name
        assert task.reject_on_worker_lost is True, name
        assert task.serializer == "json", name


# --- vigil_task ----------------------------------------------------------------------------------


def test_every_project_task_is_an_instrumented_vigil_task():
    tasks = project_tasks()

    assert {"tasks.canary", "governance.audit_verify"} <= set(tasks)
    for name, task in tasks.items():
        assert isinstance(task, VigilTask), f"{name} is not declared with @vigil_task"
        assert is_instrumented(task), f"{name} records no function metrics"


def test_vigil_task_refuses_a_name_without_an_app_prefix():
    with pytest.raises(ValueError, match="must be '<app>.<task>'"):
        vigil_task(name="canary")


def test_vigil_task_registers_the_task_under_its_explicit_name():
    @vigil_task(name="tests.named_probe")
    def some_function_name() -> str:
        return "ok"

    registered = app.tasks["tests.named_probe"]
    assert some_function_name.name == registered.name == "tests.named_probe"
    assert is_instrumented(registered)
    assert some_function_name() == "ok"
