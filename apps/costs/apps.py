from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "apps.costs"
    label = "costs"

    def ready(self) -> None:
        from apps.common import pricing
        from apps.traces import hooks

        from .prices import model_cost
        from .rollups import cost_rollups_merge, month_spend

        # The runtime and the trace fabric price usage (and the runtime reads monthly spend)
        # through apps.common.pricing; the trace fabric hands every stored span to the cost
        # rollups (both sit below this app).
        pricing.register(pricer=model_cost, month_spend=month_spend)
        hooks.on_spans_stored(cost_rollups_merge)
