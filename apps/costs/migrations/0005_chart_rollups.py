"""Rollups for the finance console's charts (per department, per agent), and the task rollup
per department rather than per agent. Existing rollups are carried over: the new tables are
summed from the day rollup, the task rollup from the runs counted as tasks."""

from django.db import migrations, models

SUMMARIES = [
    """INSERT INTO costs_taskcostdaily (day, department_id, environment, state, outcome, runs, cost_usd)
    SELECT counted_day, department_id, environment, counted_state, counted_outcome, COUNT(*),
           SUM(cost_usd)
    FROM costs_runcost WHERE counted_state <> '' GROUP BY 1, 2, 3, 4, 5""",
    """INSERT INTO costs_departmentcostdaily (day, department_id, team_id, environment, model,
           provider, source, cost_usd, calls, input_tokens, output_tokens)
    SELECT day, department_id, team_id, environment, model, provider, source, SUM(cost_usd),
           SUM(calls), SUM(input_tokens), SUM(output_tokens)
    FROM costs_costdaily GROUP BY 1, 2, 3, 4, 5, 6, 7""",
    """INSERT INTO costs_agentcostdaily (day, agent_id, department_id, environment, cost_usd, calls)
    SELECT day, agent_id, department_id, environment, SUM(cost_usd), SUM(calls)
    FROM costs_costdaily GROUP BY 1, 2, 3, 4""",
]


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0004_budget_alerts"),
    ]

    operations = [
        migrations.CreateModel(
            name="AgentCostDaily",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("agent_id", models.BigIntegerField(default=0)),
                ("department_id", models.BigIntegerField(default=0)),
                ("environment", models.CharField(max_length=32)),
                ("cost_usd", models.DecimalField(decimal_places=6, default=0, max_digits=18)),
                ("calls", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="DepartmentCostDaily",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("department_id", models.BigIntegerField(default=0)),
                ("team_id", models.BigIntegerField(default=0)),
                ("environment", models.CharField(max_length=32)),
                ("model", models.CharField(blank=True, max_length=200)),
                ("provider", models.CharField(blank=True, max_length=200)),
                ("source", models.CharField(max_length=9)),
                ("cost_usd", models.DecimalField(decimal_places=6, default=0, max_digits=18)),
                ("calls", models.BigIntegerField(default=0)),
                ("input_tokens", models.BigIntegerField(default=0)),
                ("output_tokens", models.BigIntegerField(default=0)),
            ],
        ),
        # Re-derived below from the runs counted as tasks, in the new key.
        migrations.RunSQL("DELETE FROM costs_taskcostdaily", migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name="taskcostdaily",
            name="task_cost_daily_key",
        ),
        migrations.RemoveIndex(
            model_name="taskcostdaily",
            name="task_cost_department",
        ),
        migrations.RemoveField(
            model_name="taskcostdaily",
            name="agent_id",
        ),
        migrations.RemoveField(
            model_name="taskcostdaily",
            name="team_id",
        ),
        migrations.AddConstraint(
            model_name="taskcostdaily",
            constraint=models.UniqueConstraint(
                fields=("day", "department_id", "environment", "state", "outcome"),
                name="task_cost_daily_key",
            ),
        ),
        migrations.AddConstraint(
            model_name="agentcostdaily",
            constraint=models.UniqueConstraint(
                fields=("day", "agent_id", "department_id", "environment"),
                name="agent_cost_daily_key",
            ),
        ),
        migrations.AddConstraint(
            model_name="departmentcostdaily",
            constraint=models.UniqueConstraint(
                fields=(
                    "day",
                    "department_id",
                    "team_id",
                    "environment",
                    "model",
                    "provider",
                    "source",
                ),
                name="department_cost_daily_key",
            ),
        ),
        migrations.RunSQL(SUMMARIES, migrations.RunSQL.noop),
    ]
