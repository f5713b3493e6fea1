from django.db import migrations

from apps.registry.constants import DEFAULT_DATA_CLASSES


def create_defaults(apps, schema_editor):
    DataClass = apps.get_model("registry", "DataClass")
    for rank, (slug, name, description) in enumerate(DEFAULT_DATA_CLASSES):
        DataClass.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "sensitivity": rank}
        )


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
