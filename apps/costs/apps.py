from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "apps.costs"
    label = "costs"

    def ready(self) -> None:
        from apps.common import pricing
        from apps.traces import hooks

        from .prices import model_cost
        from .rollups import cost_rollups_merge

        # The runtime and the trace fabric price usage through apps.common.pricing; the trace
        # fabric hands every stored span to the cost rollups (both sit below this app).
        pricing.register(model_cost)
        hooks.on_spans_stored(cost_rollups_merge)
