"""Budgets get a slug (their name in the API, the console and manifests) and updated_at.

Existing budgets are named from their name and id, which is unique by construction.
"""

import django.db.models.deletion  # noqa: F401
from django.db import migrations, models
from django.utils.text import slugify

import apps.accounts.models
import apps.runtime.models


def name_existing(apps, schema_editor):
    Budget = apps.get_model("runtime", "Budget")
    for budget in Budget.objects.filter(slug__isnull=True).only("pk", "name"):
        base = (slugify(budget.name) or "budget")[:48].strip("-") or "budget"
        budget.slug = f"{base}-{budget.pk}"
        budget.save(update_fields=["slug"])


class Migration(migrations.Migration):
    dependencies = [("runtime", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="budget",
            name="slug",
            # Plain and unindexed at first: the unique slug's indexes come with the AlterField.
            field=models.CharField(max_length=60, null=True),
        ),
        migrations.RunPython(name_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="budget",
            name="slug",
            field=models.SlugField(
                default=apps.runtime.models.new_budget_slug,
                max_length=60,
                unique=True,
                validators=[apps.accounts.models.slug_validator],
            ),
        ),
        migrations.AddField(
            model_name="budget",
            name="updated_at",
            field=models.DateTimeField(auto_now=True),
        ),
    ]
