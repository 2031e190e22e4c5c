from django.urls import include, path
from rest_framework.routers import DefaultRouter

from items.views import ItemViewSet, index

router = DefaultRouter()
router.register("items", ItemViewSet)

urlpatterns = [
    path("", index, name="index"),
    path("api/", include(router.urls)),
]
