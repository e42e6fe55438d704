"""The backtest as a benchmark result (bench/results/predict_backtest.json) and docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from governance.services.predictive.backtest import BacktestReport

AUC_TARGET = 0.85
LEAD_TARGET_HOURS = 6.0


def write_backtest_result(report: BacktestReport) -> Path:
    from bench.harness import write_result, write_summary

    rows = []
    for prediction_type, r in report.by_type.items():
        m = r.metrics
        drift = prediction_type == "drift_risk"
        rows += [
            {"metric": f"{prediction_type}: AUC", "value": m["auc"], "unit": "",
             **({"target": f"≥ {AUC_TARGET}", "ok": (m["auc"] or 0) >= AUC_TARGET} if drift else {})},
            {"metric": f"{prediction_type}: Brier score", "value": m["brier"], "unit": "(lower is better)"},
            {"metric": f"{prediction_type}: precision at threshold {m['threshold']}",
             "value": m["precision_at_threshold"], "unit": ""},
            {"metric": f"{prediction_type}: recall at threshold", "value": m["recall_at_threshold"], "unit": ""},
            {"metric": f"{prediction_type}: mean lead time ({m['onsets_detected']}/{m['onsets']} onsets)",
             "value": m["mean_lead_time_hours"], "unit": "h",
             **({"target": f"≥ {LEAD_TARGET_HOURS:g} h",
                 "ok": (m["mean_lead_time_hours"] or 0) >= LEAD_TARGET_HOURS} if drift else {})},
        ]  # fmt: skip
    path = write_result(
        "predict_backtest",
        title=f"Predictive governance backtest (seed {report.seed})",
        results=rows,
        notes=(
            f"`manage.py predict_backtest --seed {report.seed} --systems {report.systems} --days {report.days}`: "
            f"synthetic history with labelled onsets ({report.rows_written.get('events')} events), walk-forward "
            f"every {report.step_hours} h, horizon {report.timeframe_hours} h; models trained on half the systems "
            f"({report.train_samples} samples), scored on the other half ({report.holdout_samples} samples). "
            "Baseline: a coin toss has AUC 0.5; always answering the base rate has the Brier score "
            "p·(1−p) of the positives' share p."
        ),
    )
    write_summary()
    return path
