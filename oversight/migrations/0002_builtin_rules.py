from django.db import migrations

from oversight.rules import ensure_builtin_rules


class Migration(migrations.Migration):
    dependencies = [("oversight", "0001_initial")]

    operations = [migrations.RunPython(ensure_builtin_rules, migrations.RunPython.noop)]
