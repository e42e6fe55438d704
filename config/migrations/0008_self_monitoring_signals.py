from django.db import migrations

from config.seeding import add_self_monitoring_signals


class Migration(migrations.Migration):
    """Add the self-monitoring signals (queue_depth, outbox_lag_seconds, beat_lag_seconds) to an installed
    ``oversight.thresholds.data_quality``."""

    dependencies = [("config", "0007_seed_observability_keys")]

    operations = [migrations.RunPython(add_self_monitoring_signals, migrations.RunPython.noop)]
