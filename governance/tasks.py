"""Celery tasks of the governance core (thin: they call services)."""

from governance.services.audit import audit_chain_verify_and_record
from tasks.base import vigil_task


@vigil_task(name="governance.audit_verify")
def audit_verify() -> bool:
    """Hourly walk of the audit chain. Not retried: a failure here must be seen, not hidden."""
    return audit_chain_verify_and_record().ok


@vigil_task(name="governance.ratelimit_cleanup")
def ratelimit_cleanup() -> dict[str, int]:
    """Every 15 minutes: delete expired rate-limit counters and judged governed-change rows past their
    retention, in chunks. Idempotent."""
    from governance.services.bypass import governed_changes_purge
    from governance.services.ratelimit import rate_limits_cleanup

    return {"rate_limits": rate_limits_cleanup(), "governed_changes": governed_changes_purge()}


@vigil_task(name="governance.bypass_scan")
def bypass_scan() -> dict[str, int]:
    """Every minute: run the periodic bypass detectors (governance.services.bypass). Idempotent per hour."""
    from governance.services.bypass import bypass_scan as scan

    return scan()


@vigil_task(name="governance.demo_run", soft_time_limit=900, time_limit=960)
def demo_run(run_id: str) -> str:
    """Play one golden-demo run (started by the API or the admin). Idempotent: a run that is not pending
    any more is left as it is. Not retried: a failed step is the run's result, not a transient error."""
    from governance.services.demo import demo_run_execute

    return demo_run_execute(run_id=run_id).status


@vigil_task(name="governance.predict")
def predict() -> dict:
    """Every 15 minutes (queue ``predict``): the prediction pass for the current slot, then the outcomes of
    predictions whose timeframe has passed and the retention purge. Idempotent per 15-minute slot."""
    from governance.services.predictive import predictions_evaluate_outcomes, predictions_purge, predictions_run

    result = predictions_run().as_dict()
    result["outcomes"] = predictions_evaluate_outcomes()
    result["purged"] = predictions_purge()
    return result


@vigil_task(name="governance.predict_retrain")
def predict_retrain() -> dict:
    """Daily (queue ``predict``): retrain every predictor on this installation's labelled outcomes once
    ``retrain_min_labelled`` exist (a type with fewer is left as it is); a version is activated only when
    its measured quality is at least the active one's."""
    from governance.choices import PredictorSource
    from governance.services.predictive import predictors_train

    rows = predictors_train(source=PredictorSource.HISTORY)
    return {row.prediction_type: {"version": row.version, "active": row.is_active} for row in rows}
