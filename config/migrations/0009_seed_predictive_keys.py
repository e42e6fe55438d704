from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    """Seed ``governance.predictive`` (prediction thresholds, horizon and quality floor)."""

    dependencies = [("config", "0008_self_monitoring_signals")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
