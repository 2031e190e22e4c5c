"""Drives the real channels_redis pub/sub layer for swift-channels' interop tests.

Commands (hosts are Redis URLs, comma separated, in shard order):
  receive-group HOSTS GROUP COUNT   join GROUP with a new channel, print "READY <channel>", then COUNT messages
  receive HOSTS COUNT               make a new channel, print "READY <channel>", then COUNT messages
  group-send HOSTS GROUP JSON       group_send JSON (a "bytes_hex" field becomes a bytes value "raw")
  send HOSTS CHANNEL JSON           send JSON to a channel
  encode JSON                       print msgpack.packb(JSON) as hex

Received messages are printed one per line as JSON; bytes values become {"__bytes__": "<hex>"}.
"""
import asyncio
import json
import sys

import msgpack
from channels_redis.pubsub import RedisPubSubChannelLayer


def layer(hosts):
    return RedisPubSubChannelLayer(hosts=hosts.split(","))


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
    command = argv[1]
    if command == "encode":
        print(msgpack.packb(as_message(argv[2])).hex())
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
            await the_layer.send(argv[3], as_message(argv[4]))
            print("SENT", flush=True)
        else:
            raise SystemExit(f"unknown command {command}")
    finally:
        await the_layer.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
