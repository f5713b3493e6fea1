from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "apps.runtime"
    label = "runtime"

    def ready(self) -> None:
        from .manifests import register

        register()  # kind: Budget in manifests
