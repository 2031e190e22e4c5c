from django.contrib import admin
from django.urls import include, path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("live/", views.live, name="live"),
    path("chat/<str:room_name>/announce/", views.announce, name="announce"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
