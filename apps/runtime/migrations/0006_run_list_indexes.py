"""Indexes for the trace fabric's runs list (newest first, paginated) and the live fleet."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runtime", "0005_decision_seal"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["-started_at", "-id"], name="run_started"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("ended_at__isnull", False)),
                fields=["-ended_at"],
                name="run_ended",
            ),
        ),
    ]
