from django.db import migrations

from config.seeding import add_bypass_signals, seed_missing_keys


class Migration(migrations.Migration):
    """Seed ``governance.bypass`` and add the bypass detectors' signals to the security thresholds."""

    dependencies = [("config", "0005_seed_incident_keys")]

    operations = [
        migrations.RunPython(seed_missing_keys, migrations.RunPython.noop),
        migrations.RunPython(add_bypass_signals, migrations.RunPython.noop),
    ]
