from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    """Seed ``observability.retention`` (function-metrics rollup and retention)."""

    dependencies = [("config", "0006_seed_bypass_keys")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
