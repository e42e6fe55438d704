from django.db import migrations

from config.seeding import seed_missing_keys


class Migration(migrations.Migration):
    dependencies = [("config", "0001_initial")]

    operations = [migrations.RunPython(seed_missing_keys, migrations.RunPython.noop)]
