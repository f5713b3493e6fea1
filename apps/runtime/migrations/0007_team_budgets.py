"""Budgets over a team (scope team_month), beside those over an agent or a department."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("registry", "0008_tool_cost_per_call"),
        ("runtime", "0006_run_list_indexes"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="budget",
            name="budget_scope_matches_owner",
        ),
        migrations.AddField(
            model_name="budget",
            name="team",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="budgets",
                to="accounts.team",
            ),
        ),
        migrations.AlterField(
            model_name="budget",
            name="scope",
            field=models.CharField(
                choices=[
                    ("run", "Each run of the agent"),
                    ("agent_day", "The agent, per day"),
                    ("agent_month", "The agent, per month"),
                    ("department_month", "The department, per month"),
                    ("team_month", "The team, per month"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("agent__isnull", True),
                        ("department__isnull", False),
                        ("scope", "department_month"),
                        ("team__isnull", True),
                    ),
                    models.Q(
                        ("agent__isnull", True),
                        ("department__isnull", True),
                        ("scope", "team_month"),
                        ("team__isnull", False),
                    ),
                    models.Q(
                        models.Q(("scope__in", ["department_month", "team_month"]), _negated=True),
                        ("agent__isnull", False),
                        ("department__isnull", True),
                        ("team__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="budget_scope_matches_owner",
            ),
        ),
    ]
