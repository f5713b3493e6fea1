from django.urls import path

from . import views

app_name = "traces"

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
]
