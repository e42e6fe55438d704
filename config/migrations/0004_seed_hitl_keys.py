from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    """Seed the automation-bias and assist-model keys added with the HITL engine."""

    dependencies = [("config", "0003_seed_oversight_rule_keys")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
