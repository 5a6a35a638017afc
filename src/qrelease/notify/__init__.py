"""Notifications: audit events matched by rules and delivered to chat, mail, webhooks and GitHub.

`rules` decides (pure: which kinds an event is, which channels want it, what the message
says); `channels` and `apprise` deliver one message each; `ledger` keeps each channel's
cursor in the store; `notifier` reads the audit log after the cursors and drives delivery.
"""

from __future__ import annotations

from qrelease.notify.channels import Channel, ChannelError, DeliveryError, build_channels
from qrelease.notify.notifier import Notifier
from qrelease.notify.rules import Message, channels_for, kinds_of, render

__all__ = [
    "Channel",
    "ChannelError",
    "DeliveryError",
    "Message",
    "Notifier",
    "build_channels",
    "channels_for",
    "kinds_of",
    "render",
]
