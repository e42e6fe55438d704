from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    """Seed the notification, regulatory-deadline and follow-up keys of the incident lifecycle engine."""

    dependencies = [("config", "0004_seed_hitl_keys")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
