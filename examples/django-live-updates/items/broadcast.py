"""Model changes to the channel layer, for the swift-channels nodes to push to browsers.

broadcast_changes(Model, Serializer) connects post_save and post_delete of Model. Once the transaction commits
(clients never see a row that could still roll back), each change becomes one group_send to the group
updates_<model name> of the message

    {"type": "model.changed", "action": "created" | "updated" | "deleted", "model": "<model name>",
     "pk": <pk>, "data": <the serializer's data of the object; for "deleted", as it was>}

The data is taken when the signal fires: for a deletion that is the last moment the object still has its pk.
A channel layer that fails (Redis down, a timeout) is logged; the request that changed the model goes on.
Changes that send no signals (QuerySet.update(), bulk_create() without pks, raw SQL) are not broadcast.
"""
import asyncio
import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from rest_framework.utils.encoders import JSONEncoder

logger = logging.getLogger(__name__)

# Seconds a group_send may take before the change is given up (and logged).
SEND_TIMEOUT = 5.0


def model_name(model):
    return model._meta.model_name.lower()


def group_name(model):
    return f"updates_{model_name(model)}"


def change_message(action, instance, serializer_class):
    # Through JSON: plain dicts, lists and strings (dates, decimals) that msgpack and the browser both take.
    data = json.loads(json.dumps(serializer_class(instance).data, cls=JSONEncoder))
    pk = instance.pk if isinstance(instance.pk, int) else str(instance.pk)
    return {"type": "model.changed", "action": action, "model": model_name(type(instance)), "pk": pk, "data": data}


async def _group_send(group, message):
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer: CHANNEL_LAYERS is not configured")
    await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)


def send_change(group, message):
    try:
        async_to_sync(_group_send)(group, message)
    except Exception:
        logger.exception("could not send %s %s %s to the group %s", message["model"], message["pk"], message["action"], group)


def broadcast_changes(model, serializer_class):
    group = group_name(model)

    def queue(instance, action, using):
        message = change_message(action, instance, serializer_class)
        transaction.on_commit(lambda: send_change(group, message), using=using)

    def saved(sender, instance, created, raw=False, using=None, **kwargs):
        if not raw:  # loaddata: fixtures are not changes
            queue(instance, "created" if created else "updated", using)

    def deleted(sender, instance, using=None, **kwargs):
        queue(instance, "deleted", using)

    label = model._meta.label_lower
    post_save.connect(saved, sender=model, weak=False, dispatch_uid=f"broadcast-saved-{label}")
    post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=f"broadcast-deleted-{label}")
