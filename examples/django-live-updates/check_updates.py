"""Checks the live-updates example's contract: REST changes become "model.changed" messages on the channel layer.

Commands:
  check_updates.py BASE_URL [NAME]        create an item NAME through the REST API, mark it done, delete it;
                                          print the created pk (one line)
  check_updates.py listen [MODEL] [COUNT] join updates_MODEL (item) with a new channel on the channel layer the
                                          example's settings choose, print "READY <channel>", then each message
                                          received as one JSON line (COUNT of them, or until interrupted)
  check_updates.py verify BASE_URL        both at once: listen, make the three changes, check the three
                                          messages have exactly the contract's shape; prints OK or exits 1

The layer comes from the same environment as the example's (liveupdates/channel_layers.py): CHANNELS_LAYER,
CHANNELS_REDIS_URL, CHANNELS_PREFIX, CHANNELS_SYMMETRIC_ENCRYPTION_KEYS. BASE_URL is Django's, e.g.
http://127.0.0.1:8001. Only the standard library and channels_redis (for listen, verify).
"""
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MESSAGE_KEYS = {"type", "action", "model", "pk", "data"}
DATA_KEYS = {"id", "name", "done", "updated_at"}
RECEIVE_TIMEOUT = 20


def request(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=10) as response:
        text = response.read()
        return response.status, (json.loads(text) if text else None)


def rest_changes(base_url, name):
    """Create, update (done: true) and delete an item; returns the three REST answers' data (the last: None)."""
    api = base_url.rstrip("/") + "/api/items/"
    status, created = request("POST", api, {"name": name})
    assert status == 201, f"POST {api}: {status}"
    pk = created["id"]
    status, updated = request("PATCH", f"{api}{pk}/", {"done": True})
    assert status == 200 and updated["done"] is True, f"PATCH {api}{pk}/: {status} {updated}"
    status, _ = request("DELETE", f"{api}{pk}/")
    assert status == 204, f"DELETE {api}{pk}/: {status}"
    return pk, created, updated


def channel_layer():
    sys.path.insert(0, HERE)
    from liveupdates.channel_layers import backend_class, channel_layers_from_environment

    settings = channel_layers_from_environment()["default"]
    return backend_class(settings["BACKEND"])(**settings["CONFIG"])


def printable(value):
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


async def close(layer):
    # Never flush() the core layer: that deletes every group and message under its prefix, the nodes' too.
    if hasattr(layer, "close_pools"):
        await layer.close_pools()
    else:
        await layer.flush()  # the pub/sub layer's flush() only unsubscribes and closes its connections


async def joined(model):
    layer = channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(f"updates_{model}", channel)
    return layer, channel


async def listen(model, count):
    layer, channel = await joined(model)
    print("READY " + channel, flush=True)
    try:
        received = 0
        while count is None or received < count:
            message = await layer.receive(channel)
            print(json.dumps(printable(message)), flush=True)
            received += 1
    finally:
        await layer.group_discard(f"updates_{model}", channel)
        await close(layer)


def shape_errors(messages, pk, created, updated):
    errors = []
    actions = [m.get("action") for m in messages]
    if actions != ["created", "updated", "deleted"]:
        errors.append(f"actions {actions}, expected created, updated, deleted")
    expected_data = {"created": created, "updated": updated, "deleted": updated}
    for message in messages:
        action = message.get("action")
        if set(message) != MESSAGE_KEYS:
            errors.append(f"{action}: keys {sorted(message)}, expected {sorted(MESSAGE_KEYS)}")
        if message.get("type") != "model.changed" or message.get("model") != "item":
            errors.append(f"{action}: type {message.get('type')!r}, model {message.get('model')!r}")
        if type(message.get("pk")) is not int or message.get("pk") != pk:
            errors.append(f"{action}: pk {message.get('pk')!r}, expected {pk}")
        data = message.get("data")
        if not isinstance(data, dict) or set(data) != DATA_KEYS:
            errors.append(f"{action}: data {data!r}, expected the keys {sorted(DATA_KEYS)}")
        elif action in expected_data and data != expected_data[action]:
            errors.append(f"{action}: data {data}, expected the REST API's {expected_data[action]}")
    return errors


async def verify(base_url):
    layer, channel = await joined("item")
    try:
        name = f"check {time.strftime('%H:%M:%S')}"
        pk, created, updated = await asyncio.to_thread(rest_changes, base_url, name)
        messages = []
        for _ in range(3):
            messages.append(await asyncio.wait_for(layer.receive(channel), RECEIVE_TIMEOUT))
        # Nothing more: one message per change.
        try:
            extra = await asyncio.wait_for(layer.receive(channel), 1)
            messages.append(extra)
        except asyncio.TimeoutError:
            pass
    finally:
        await layer.group_discard("updates_item", channel)
        await close(layer)
    for message in messages:
        print(json.dumps(printable(message)), flush=True)
    errors = shape_errors(messages, pk, created, updated)
    if len(messages) != 3:
        errors.append(f"{len(messages)} messages, expected 3")
    if errors:
        for error in errors:
            print("FAIL " + error, file=sys.stderr)
        raise SystemExit(1)
    print(f"OK {pk}", flush=True)


def main(argv):
    if len(argv) < 2 or argv[1] in {"-h", "--help"}:
        raise SystemExit(__doc__)
    command = argv[1]
    try:
        if command == "listen":
            model = argv[2] if len(argv) > 2 else "item"
            count = int(argv[3]) if len(argv) > 3 else None
            asyncio.run(listen(model, count))
        elif command == "verify":
            asyncio.run(verify(argv[2]))
        else:
            pk, _, _ = rest_changes(command, argv[2] if len(argv) > 2 else f"check {time.strftime('%H:%M:%S')}")
            print(pk, flush=True)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{error.code} {error.reason} from {error.url}: {error.read().decode(errors='replace')}")
    except urllib.error.URLError as error:
        raise SystemExit(f"{command}: {error.reason}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv)
