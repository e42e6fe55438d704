"""Roles (as groups) and the 12 governance capabilities."""

from django.db import migrations

from governance.seed import CAPABILITIES, ROLES, ensure_roles_and_capabilities


def remove(apps, schema_editor):
    apps.get_model("governance", "Capability").objects.filter(code__in=[c[1] for c in CAPABILITIES]).delete()
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(ensure_roles_and_capabilities, remove)]
