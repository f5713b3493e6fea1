from django.apps import AppConfig


class PolicyConfig(AppConfig):
    name = "apps.policy"
    label = "policy"
    verbose_name = "Policy"

    def ready(self) -> None:
        from .manifests import register

        register()  # kind: Policy in manifests
