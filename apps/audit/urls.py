from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.audit_log, name="log"),
    path("chain/", views.chain_status, name="chain"),
    path("chain/verify/", views.chain_verify, name="chain-verify"),
    path("chain/export/", views.chain_export, name="chain-export"),
]
