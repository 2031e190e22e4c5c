"""The project's settings for the bridge: ``SWIFT_CHANNELS_FORWARD`` and ``SWIFT_CHANNELS_PRESENCE``."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

from django.utils.module_loading import import_string

from .protocol import handler_name


class BridgeSettingsError(ValueError):
    """A bridge setting the worker cannot use; the message names the setting and what to fix."""


Rules = Dict[str, List[str]]


class ForwardRules:
    """``SWIFT_CHANNELS_FORWARD``: per consumer class, message types the node turns into frames itself.

    ``{"chat.consumers.ChatConsumer": {"chat.message": ["message"]}}``: for connections of that class (or a
    subclass), a ``chat.message`` (or ``chat_message``) layer message becomes the frame
    ``{"message": event["message"]}`` without waking Python. Rules are keyed by handler name, as the node
    matches them.
    """

    def __init__(self, by_class: Sequence[Tuple[type, Rules]]):
        self._by_class = list(by_class)

    @classmethod
    def from_setting(cls, value: Any) -> "ForwardRules":
        if value is None:
            return cls([])
        if not isinstance(value, Mapping):
            raise BridgeSettingsError(
                "SWIFT_CHANNELS_FORWARD must be a dict of consumer class paths to {message type: [fields]}, "
                f"not {type(value).__name__}"
            )
        entries: List[Tuple[type, Rules]] = []
        for path, types in value.items():
            consumer = _consumer_class(path, "SWIFT_CHANNELS_FORWARD")
            if not isinstance(types, Mapping) or not types:
                raise BridgeSettingsError(
                    f"SWIFT_CHANNELS_FORWARD[{path!r}] must be a non-empty dict of message type to a list of fields"
                )
            rules: Rules = {}
            for message_type, fields in types.items():
                if not isinstance(message_type, str) or not message_type or message_type.startswith((".", "_")):
                    raise BridgeSettingsError(
                        f"SWIFT_CHANNELS_FORWARD[{path!r}]: {message_type!r} is not a message type (like 'chat.message')"
                    )
                if (
                    isinstance(fields, (str, bytes))
                    or not isinstance(fields, Sequence)
                    or not fields
                    or not all(isinstance(field, str) and field for field in fields)
                ):
                    raise BridgeSettingsError(
                        f"SWIFT_CHANNELS_FORWARD[{path!r}][{message_type!r}] must be a non-empty list of field names, "
                        f"like ['message'], not {fields!r}"
                    )
                rules[handler_name(message_type)] = list(fields)
            entries.append((consumer, rules))
        return cls(entries)

    def for_consumer(self, consumer: Optional[type]) -> Rules:
        """The rules of the nearest configured class in ``consumer``'s MRO; empty when none applies."""
        if consumer is None:
            return {}
        for base in consumer.__mro__:
            for configured, rules in self._by_class:
                if base is configured:
                    return dict(rules)
        return {}


class PresenceClasses:
    """``SWIFT_CHANNELS_PRESENCE``: consumer classes whose groups are joined with presence on the node."""

    def __init__(self, classes: Sequence[type]):
        self._classes = tuple(classes)

    @classmethod
    def from_setting(cls, value: Any) -> "PresenceClasses":
        if value is None:
            return cls(())
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise BridgeSettingsError("SWIFT_CHANNELS_PRESENCE must be a list of consumer class paths")
        return cls([_consumer_class(path, "SWIFT_CHANNELS_PRESENCE") for path in value])

    def applies_to(self, consumer: Optional[type]) -> bool:
        return consumer is not None and any(issubclass(consumer, base) for base in self._classes)


def _consumer_class(path: Any, setting: str) -> Type[Any]:
    if not isinstance(path, str):
        raise BridgeSettingsError(f"{setting}: keys are consumer class paths like 'chat.consumers.ChatConsumer', not {path!r}")
    try:
        consumer = import_string(path)
    except ImportError as error:
        raise BridgeSettingsError(f"{setting}: cannot import {path!r}: {error}") from error
    if not isinstance(consumer, type):
        raise BridgeSettingsError(f"{setting}: {path!r} is not a class")
    return consumer
