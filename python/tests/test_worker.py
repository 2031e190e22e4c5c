"""The worker against a real Redis and a real Django project, driven over the wire the nodes speak."""
import asyncio
import contextlib
import json
import uuid

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

from nodedriver import NodeDriver
from swift_channels import connection as connection_module
from swift_channels.bootstrap import install
from swift_channels.settings import ForwardRules
from swift_channels.worker import Worker

LAYERS = {"pubsub": RedisPubSubChannelLayer, "core": RedisChannelLayer}


def run(coroutine, timeout=60):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


@contextlib.asynccontextmanager
async def bridge(redis_url, kind="pubsub", threads=1, answer_group_calls=True):
    from testproject.asgi import application

    prefix = "t" + uuid.uuid4().hex[:8]
    worker = Worker(
        application,
        LAYERS[kind](hosts=[redis_url], prefix=prefix),
        forward=ForwardRules.from_setting(settings.SWIFT_CHANNELS_FORWARD),
        threads=threads,
        drain_time=5.0,
    )
    install("default", worker)
    driver = NodeDriver(LAYERS[kind](hosts=[redis_url], prefix=prefix), answer_group_calls=answer_group_calls)
    await driver.start()
    await worker.start()
    serving = asyncio.ensure_future(worker.run())
    name = await driver.wait_for_worker()
    try:
        yield worker, driver, name
    finally:
        worker.request_stop()
        await asyncio.wait_for(serving, 30)
        await driver.stop()


async def eventually(condition, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["pubsub", "core"])
def test_seed_chat_consumer_runs_unchanged_with_its_channel_on_the_node(redis_url, kind):
    async def main():
        async with bridge(redis_url, kind) as (worker, driver, name):
            chat = await driver.connect(name, "/ws/chat/lobby/")
            joined = await chat.action("group_add")
            assert joined == {"group": "chat_lobby"}
            accepted = await chat.action("accept")
            # The fast path for this consumer class, from SWIFT_CHANNELS_FORWARD, keyed by handler name.
            assert accepted["forward"] == {"chat_message": ["message"]}
            assert chat.kinds().index("group_add") < chat.kinds().index("accept")

            # The client says something: the consumer group-sends on the real layer, the node's channel gets
            # it (the driver joined the group for real), forwards it, and the consumer's handler answers.
            await chat.receive_text(json.dumps({"message": "hi"}))
            assert await chat.action("send") == {"text": json.dumps({"message": "hi"})}
            # Any other type reaches the consumer's own handler.
            await driver.layer.group_send("chat_lobby", {"type": "chat.shout", "message": "hey"})
            await eventually(lambda: {"text": json.dumps({"shout": "HEY"})} in [b for _, k, b in chat.actions if k == "send"])

            # No worker took the connection's channel: a direct send goes through the node only.
            assert worker.connection(chat.name) is not None
            await chat.send("disconnect", {"code": 1000})
            await eventually(lambda: worker.connection(chat.name) is None)
            # Everything the node sent was taken by the application.
            assert driver.taken[chat.name] == chat.seq

    run(main())


def test_scope_cookie_session_subprotocol_and_frames(redis_url):
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = get_user_model().objects.get_or_create(username="ada")
    user.set_password("lovelace-1815")
    user.save()
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()

    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            cookie = f"csrftoken=abc; sessionid={session.session_key}".encode()
            connection = await driver.connect(
                name, "/ws/scope/x%20y/", query=b"a=1&b=two%20words", headers=[(b"cookie", cookie)], subprotocols=["chat.v1", "other"]
            )
            accepted = await connection.action("accept")
            assert accepted["subprotocol"] == "chat.v1"
            assert accepted["headers"] == [[b"x-bridge", b"yes"]]
            seen = json.loads((await connection.action("send"))["text"])
            assert seen["user"] == "ada"
            assert seen["kwargs"] == {"name": "x%20y"}
            assert seen["query_string"] == "a=1&b=two%20words"
            assert seen["cookie"] == cookie.decode()
            assert seen["client"] == ["127.0.0.1", 50000]
            assert seen["subprotocols"] == ["chat.v1", "other"]
            assert seen["channel"] == connection.name

            await connection.send("receive", {"bytes": b"\x00\x01\x02"})
            await eventually(lambda: {"bytes": b"\x02\x01\x00"} in [b for _, k, b in connection.actions if k == "send"])
            await connection.receive_text("close")
            assert await connection.action("close") == {"code": 4321, "reason": "asked to"}

    run(main())


def test_refusals_and_failures_are_told_to_the_node(redis_url):
    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            # close() before accept: the node refuses the handshake (HTTP 403).
            denied = await driver.connect(name, "/ws/deny/")
            assert (await denied.action("close"))["code"] == 1000
            assert "accept" not in denied.kinds()
            # connect() raises: the application ends with the error, before accept (HTTP 500).
            raising = await driver.connect(name, "/ws/raise/")
            ended = await raising.action("end")
            assert "refused by code" in ended["error"]
            # A path the router does not know raises in URLRouter, as under Daphne.
            unknown = await driver.connect(name, "/ws/nowhere/")
            assert "No route found" in (await unknown.action("end"))["error"]
            # A handler that raises after accept: the node closes 1011.
            scope = await driver.connect(name, "/ws/scope/a/")
            await scope.action("accept")
            await scope.receive_text("raise")
            assert "the consumer failed" in (await scope.action("end"))["error"]

    run(main())


def test_origin_validator_refuses_a_foreign_origin(redis_url):
    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            # AllowedHostsOriginValidator closes before accept (the node refuses with 403).
            name2 = await driver.layer.new_channel()
            from nodedriver import DriverConnection

            foreign = driver.connections[name2] = DriverConnection(driver, name2, name)
            scope = {
                "type": "websocket", "path": "/ws/scope/a/", "raw_path": b"/ws/scope/a/", "query_string": b"",
                "headers": [[b"host", b"127.0.0.1"], [b"origin", b"https://evil.example"]],
                "client": ["127.0.0.1", 1], "server": ["127.0.0.1", 2], "subprotocols": [],
                "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws", "root_path": "",
            }
            await foreign.send("connect", {"scope": scope})
            await foreign.action("close")
            assert "accept" not in foreign.kinds()

    run(main())


def test_events_are_applied_in_sequence_whatever_order_they_arrive_in(redis_url):
    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            connection = await driver.connect(name, "/ws/scope/a/")
            await connection.action("accept")
            await driver.send_events(name, [[connection.name, 3, "receive", {"text": "third"}]])
            await driver.send_events(name, [[connection.name, 2, "receive", {"text": "second"}]])
            connection.seq = 3
            await eventually(lambda: len([k for _, k, _ in connection.actions if k == "send"]) == 3)
            texts = [b["text"] for _, k, b in connection.actions if k == "send"]
            assert texts[1:] == ["second", "third"]

    run(main())


def test_each_connection_keeps_one_of_the_worker_threads(redis_url):
    async def main():
        async with bridge(redis_url, threads=2) as (worker, driver, name):
            first = await driver.connect(name, "/ws/thread/")
            second = await driver.connect(name, "/ws/thread/")
            for connection in (first, second):
                await connection.action("accept")
                await connection.receive_text("a")
                await connection.receive_text("b")
            await eventually(lambda: all(len([1 for _, k, _ in c.actions if k == "send"]) == 2 for c in (first, second)))
            threads = [[b["text"] for _, k, b in c.actions if k == "send"] for c in (first, second)]
            assert threads[0][0] == threads[0][1] and threads[1][0] == threads[1][1]
            assert threads[0][0] != threads[1][0]
            assert all(name.startswith("swift-channels-") for name in threads[0] + threads[1])

    run(main())


@pytest.mark.parametrize("kind", ["pubsub", "core"])
def test_sigterm_drains_then_closes_with_1012_and_says_gone(redis_url, kind):
    async def main():
        async with bridge(redis_url, kind) as (worker, driver, name):
            echo = await driver.connect(name, "/ws/scope/a/")
            await echo.action("accept")
            slow = await driver.connect(name, "/ws/slow/")
            await slow.action("accept")
            await echo.receive_text("sent before SIGTERM")
            worker.request_stop()
            await driver.wait_for_worker(state="draining")
            late = await driver.connect(name, "/ws/chat/lobby/")
            assert (await late.action("reject"))["reason"] == "worker draining"
            # The frame that was there before SIGTERM was handled, then the connection closed with 1012.
            close = await echo.action("close")
            assert close["code"] == 1012
            sends = [body.get("text") for _, kind, body in echo.actions if kind == "send"]
            assert sends[-1] == "sent before SIGTERM"
            assert echo.kinds()[-1] == "close"
            await driver.wait_for_worker(state="gone")

    run(main())


def test_a_node_that_says_gone_ends_its_connections(redis_url):
    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            connection = await driver.connect(name, "/ws/chat/lobby/")
            await connection.action("accept")
            await driver.heartbeat(state="gone")
            await eventually(lambda: worker.connections == 0)

    run(main())


def test_an_unanswered_group_call_raises_in_the_consumer(redis_url, monkeypatch):
    monkeypatch.setattr(connection_module, "GROUP_CALL_TIMEOUT", 0.5)

    async def main():
        async with bridge(redis_url, answer_group_calls=False) as (worker, driver, name):
            connection = await driver.connect(name, "/ws/chat/lobby/")
            ended = await connection.action("end")
            assert "did not confirm group_add('chat_lobby')" in ended["error"]

    run(main())


def test_group_send_into_a_history_group_goes_through_the_node(redis_url):
    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            # The node says chat_* keeps a history: the consumer's group_send there becomes an action it publishes.
            await driver.heartbeat(history=["chat_*"])
            await eventually(lambda: worker.keeps_history(driver.channel, "chat_lobby"))
            assert not worker.keeps_history(driver.channel, "notes")
            chat = await driver.connect(name, "/ws/chat/lobby/")
            await chat.action("accept")
            await chat.receive_text(json.dumps({"message": "numbered"}))
            published = await chat.action("group_send")
            assert published == {"group": "chat_lobby", "message": {"type": "chat.message", "message": "numbered"}}
            # The node published it (the driver marks what it publishes), and the room heard it.
            await driver.layer.group_send("chat_lobby", {"type": "chat.shout", "message": "direct"})
            await eventually(lambda: len([1 for _, k, _ in chat.actions if k == "send"]) == 2)

    run(main())


def test_glob_patterns_match_as_the_nodes_do():
    from swift_channels.protocol import glob_matches

    assert glob_matches("chat_*", "chat_lobby") and glob_matches("*", "x") and glob_matches("news?", "news1")
    assert not glob_matches("chat_*", "notes") and not glob_matches("news?", "news12") and not glob_matches("a.b", "aXb")


def test_a_hole_that_stays_open_gives_the_connection_up_with_1012(redis_url, monkeypatch):
    monkeypatch.setattr(connection_module, "GAP_TIMEOUT", 0.3)

    async def main():
        async with bridge(redis_url) as (worker, driver, name):
            connection = await driver.connect(name, "/ws/scope/a/")
            await connection.action("accept")
            # Event 2 never comes (Redis lost it): event 3 waits, then the connection is given up.
            await driver.send_events(name, [[connection.name, 3, "receive", {"text": "third"}]])
            assert (await connection.action("close"))["code"] == 1012
            await eventually(lambda: worker.connection(connection.name) is None)
            assert "third" not in [b.get("text") for _, k, b in connection.actions if k == "send"]

    run(main())
