from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


async def healthz(request: HttpRequest) -> JsonResponse:
    """The load balancer's probe (and the benchmarks' floor): async, so it needs no thread."""
    return JsonResponse({"status": "ok"})


admin.site.site_header = "Tether administration"
admin.site.site_title = "Tether admin"

urlpatterns = [
    # The agents' hot path and the probe first: Django tries patterns in order.
    path("api/v1/runtime/", include("apps.runtime.api.urls")),
    path("api/v1/runtime/", include("apps.drift.api.runtime_urls")),
    path("api/v1/approvals/", include("apps.approvals.api.urls")),
    path("healthz", healthz, name="healthz"),
    path("", include("apps.traces.urls")),
    path("", include("apps.registry.urls")),
    path("", include("apps.runtime.urls")),
    path("", include("apps.approvals.urls")),
    path("", include("apps.killswitch.urls")),
    path("", include("apps.costs.urls")),
    path("", include("apps.drift.urls")),
    path("", include("apps.releases.urls")),
    path("accounts/", include("apps.accounts.urls")),
    path("audit/", include("apps.audit.urls")),
    path("policies/", include("apps.policy.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("controlplane.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "apps.common.views.not_found"
handler403 = "apps.common.views.forbidden"
handler400 = "apps.common.views.bad_request"
handler500 = "apps.common.views.server_error"
