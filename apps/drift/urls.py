"""Console URLs of drift detection, in the ``drift`` namespace."""

from django.urls import path

from . import views

app_name = "drift"

urlpatterns = [
    path("drift/", views.alert_list, name="alerts"),
    path("drift/<int:alert_id>/", views.alert_detail, name="alert"),
    path("drift/<int:alert_id>/acknowledge", views.alert_acknowledge, name="acknowledge"),
    path("drift/<int:alert_id>/snooze", views.alert_snooze, name="snooze"),
    path("drift/<int:alert_id>/resolve", views.alert_resolve, name="resolve"),
    path("drift/<int:alert_id>/accept", views.alert_accept, name="accept"),
    path("agents/<slug:slug>/baselines/pin", views.baseline_pin, name="baseline-pin"),
    path("agents/<slug:slug>/baselines/unpin", views.baseline_unpin, name="baseline-unpin"),
]
