from django.apps import AppConfig


class DriftConfig(AppConfig):
    name = "apps.drift"
    label = "drift"

    def ready(self) -> None:
        from apps.traces import hooks

        from .collect import span_metrics_capture

        # Custom metrics ride on spans as ``tether.metric.<name>`` attributes; the trace
        # fabric hands every stored span over (it sits below this app).
        hooks.on_spans_stored(span_metrics_capture)
