from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    """Seed the rate, absence and compound rule keys added with the detection engine."""

    dependencies = [("config", "0002_seed_keys")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
