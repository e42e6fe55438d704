from django.db import migrations

from incidents.services.rca import templates_ensure


class Migration(migrations.Migration):
    """Seed one RCA template per incident type (idempotent; edited templates are kept)."""

    dependencies = [("incidents", "0003_lifecycle")]

    operations = [migrations.RunPython(templates_ensure, migrations.RunPython.noop)]
