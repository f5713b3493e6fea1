"""Console URLs of the kill switch, in the ``killswitch`` namespace."""

from django.urls import path

from . import views

app_name = "killswitch"

urlpatterns = [
    path("kill/", views.kill_list, name="list"),
    path("kill/<str:scope>/", views.confirm, name="confirm"),
    path("kill/<int:kill_id>/release/", views.release, name="release"),
]
