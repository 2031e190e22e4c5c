from django.conf import settings
from django.shortcuts import render
from rest_framework import viewsets
from rest_framework.permissions import AllowAny

from .models import Item
from .serializers import ItemSerializer


class ItemViewSet(viewsets.ModelViewSet):
    """/api/items/: list, create, retrieve, update, partial_update, destroy.

    A demo: no authentication, anyone may write (and so no CSRF token either; see REST_FRAMEWORK in settings).
    """

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    authentication_classes = []
    permission_classes = [AllowAny]


def index(request):
    return render(request, "items/index.html", {"ws_url": settings.CHANNELS_WS_URL})
