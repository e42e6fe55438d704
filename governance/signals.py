"""Signals the governance core sends for other apps to react to, without governance importing them."""

from django.dispatch import Signal

# Sent by the predictive-governance pass after it has committed new predictions.
# Receivers get ``predictions``: a list of ``PredictiveGovernance`` rows (above or below their threshold).
# hitl connects a receiver that opens proactive low-severity reviews for those above the review threshold.
predictions_recorded = Signal()
