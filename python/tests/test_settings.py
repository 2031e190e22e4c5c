import pytest

from swift_channels.settings import BridgeSettingsError, ForwardRules, PresenceClasses


def test_forward_rules_are_keyed_by_handler_and_inherited():
    from testproject.consumers import ChatConsumer, ScopeConsumer

    rules = ForwardRules.from_setting({"testproject.consumers.ChatConsumer": {"chat.message": ["message"], "chat_note": ["a", "b"]}})
    assert rules.for_consumer(ChatConsumer) == {"chat_message": ["message"], "chat_note": ["a", "b"]}
    assert rules.for_consumer(type("Sub", (ChatConsumer,), {})) == {"chat_message": ["message"], "chat_note": ["a", "b"]}
    assert rules.for_consumer(ScopeConsumer) == {}
    assert rules.for_consumer(None) == {}


@pytest.mark.parametrize(
    "value, says",
    [
        ("chat", "must be a dict"),
        ({"nowhere.Consumer": {"a": ["b"]}}, "cannot import 'nowhere.Consumer'"),
        ({"testproject.consumers.ChatConsumer": {"chat.message": "message"}}, "list of field names"),
        ({"testproject.consumers.ChatConsumer": {"chat.message": []}}, "list of field names"),
        ({"testproject.consumers.ChatConsumer": {"_private": ["a"]}}, "is not a message type"),
        ({"testproject.consumers.ChatConsumer": {}}, "non-empty dict"),
        ({"json.dumps": {"a": ["b"]}}, "is not a class"),
    ],
)
def test_a_bad_forward_setting_says_what_to_fix(value, says):
    with pytest.raises(BridgeSettingsError, match=says.replace("(", r"\(").replace(".", r"\.")):
        ForwardRules.from_setting(value)


def test_presence_classes():
    from testproject.consumers import ChatConsumer, ScopeConsumer

    presence = PresenceClasses.from_setting(["testproject.consumers.ChatConsumer"])
    assert presence.applies_to(ChatConsumer) and not presence.applies_to(ScopeConsumer)
    with pytest.raises(BridgeSettingsError):
        PresenceClasses.from_setting("testproject.consumers.ChatConsumer")
