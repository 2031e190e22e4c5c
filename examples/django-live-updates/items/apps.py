from django.apps import AppConfig


class ItemsConfig(AppConfig):
    name = "items"

    def ready(self):
        from .broadcast import broadcast_changes
        from .models import Item
        from .serializers import ItemSerializer

        broadcast_changes(Item, ItemSerializer)
