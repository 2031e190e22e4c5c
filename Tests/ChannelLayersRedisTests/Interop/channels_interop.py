"""Drives the real channels_redis layers for swift-channels' interop tests.

Options before the command choose the layer: none for channels_redis.pubsub.RedisPubSubChannelLayer;
--core for channels_redis.core.RedisChannelLayer, with --group-expiry SECONDS and --capacity N; for
both, --keys K1,K2 (symmetric_encryption_keys).

Commands (hosts are Redis URLs, comma separated, in shard order):
  receive-group HOSTS GROUP COUNT   join GROUP with a new channel, print "READY <channel>", then COUNT messages
  receive HOSTS COUNT               make a new channel, print "READY <channel>", then COUNT messages
  group-send HOSTS GROUP JSON       group_send JSON (a "bytes_hex" field becomes a bytes value "raw")
  send HOSTS CHANNEL JSON           send JSON to a channel; prints SENT, or FULL on ChannelFull
  encode JSON                       print msgpack.packb(JSON) as hex
  fernet-encrypt KEY TEXT           print the token channels_redis makes for TEXT with symmetric key KEY
  fernet-decrypt KEY TOKEN          print the text of TOKEN, or INVALID

Received messages are printed one per line as JSON; bytes values become {"__bytes__": "<hex>"}.
"""
import asyncio
import json
import sys

import msgpack
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

OPTIONS = {}


def layer(hosts):
    config = {"hosts": hosts.split(",")}
    if "--keys" in OPTIONS:
        config["symmetric_encryption_keys"] = OPTIONS["--keys"].split(",")
    if "--core" not in OPTIONS:
        return RedisPubSubChannelLayer(**config)
    if "--group-expiry" in OPTIONS:
        config["group_expiry"] = int(OPTIONS["--group-expiry"])
    if "--capacity" in OPTIONS:
        config["capacity"] = int(OPTIONS["--capacity"])
    return RedisChannelLayer(**config)


def take_options(argv):
    rest = [argv[0]]
    index = 1
    while index < len(argv) and argv[index].startswith("--"):
        name = argv[index]
        if name == "--core":
            OPTIONS[name] = True
            index += 1
        else:
            OPTIONS[name] = argv[index + 1]
            index += 2
    return rest + argv[index:]


def as_message(text):
    message = json.loads(text)
    if "bytes_hex" in message:
        message["raw"] = bytes.fromhex(message.pop("bytes_hex"))
    return message


def printable(value):
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


async def receive(the_layer, channel, count):
    for _ in range(count):
        message = await asyncio.wait_for(the_layer.receive(channel), timeout=20)
        print(json.dumps(printable(message)), flush=True)


async def main(argv):
    argv = take_options(argv)
    command = argv[1]
    if command == "encode":
        print(msgpack.packb(as_message(argv[2])).hex())
        return
    if command in ("fernet-encrypt", "fernet-decrypt"):
        from cryptography.fernet import InvalidToken
        from channels_redis.serializers import registry

        fernet = registry.get_serializer("msgpack").make_fernet(argv[2])
        if command == "fernet-encrypt":
            print(fernet.encrypt(argv[3].encode()).decode())
        else:
            try:
                print(fernet.decrypt(argv[3].encode()).decode())
            except InvalidToken:
                print("INVALID")
        return
    the_layer = layer(argv[2])
    try:
        if command == "receive-group":
            channel = await the_layer.new_channel()
            await the_layer.group_add(argv[3], channel)
            print("READY " + channel, flush=True)
            await receive(the_layer, channel, int(argv[4]))
        elif command == "receive":
            channel = await the_layer.new_channel()
            print("READY " + channel, flush=True)
            await receive(the_layer, channel, int(argv[3]))
        elif command == "group-send":
            await the_layer.group_send(argv[3], as_message(argv[4]))
            print("SENT", flush=True)
        elif command == "send":
            try:
                await the_layer.send(argv[3], as_message(argv[4]))
                print("SENT", flush=True)
            except ChannelFull:
                print("FULL", flush=True)
        else:
            raise SystemExit(f"unknown command {command}")
    finally:
        if "--core" in OPTIONS:
            # flush() of the core layer deletes every key of the prefix, the Swift side's too.
            await the_layer.close_pools()
        else:
            await the_layer.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
