from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


admin.site.site_header = "Tether administration"
admin.site.site_title = "Tether admin"

urlpatterns = [
    path("", include("apps.registry.urls")),
    path("", include("apps.runtime.urls")),
    path("accounts/", include("apps.accounts.urls")),
    path("audit/", include("apps.audit.urls")),
    path("policies/", include("apps.policy.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("controlplane.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
]

handler404 = "apps.common.views.not_found"
handler403 = "apps.common.views.forbidden"
handler400 = "apps.common.views.bad_request"
handler500 = "apps.common.views.server_error"
