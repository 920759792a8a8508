"""core/presence.py: the node's own presence registry and the join/leave pushes."""

from __future__ import annotations

import json

from rocketws.brokers.base import ClientInfo, PresenceStats, presence_stats
from rocketws.core.presence import LocalPresence, encode_join_leave

ALICE = ClientInfo("c1", "alice", {"name": "Alice"}, None)
BOB = ClientInfo("c2", "bob", None, {"seat": 3})
ANON = ClientInfo("c3", "")


def test_local_presence_tracks_clients_per_channel() -> None:
    local = LocalPresence()
    assert not local
    local.add("room", ALICE, presence=True, join_leave=False)
    local.add("room", BOB, presence=True, join_leave=False)
    assert local and local.tracks("room") and not local.tracks("other")
    assert dict(local.clients("room")) == {"c1": ALICE, "c2": BOB}
    assert local.presence_channels() == ["room"]


def test_local_presence_remove_reports_the_entry_and_flags_once() -> None:
    local = LocalPresence()
    local.add("room", ALICE, presence=True, join_leave=True)
    assert local.remove("room", "c1") == (ALICE, True, True)
    assert local.remove("room", "c1") is None  # already gone
    assert local.remove("nowhere", "c1") is None
    assert not local and not local.tracks("room")  # an empty channel is forgotten


def test_local_presence_join_leave_only_channel_keeps_no_presence() -> None:
    local = LocalPresence()
    local.add("feed", ALICE, presence=False, join_leave=True)
    assert local.tracks("feed")
    assert dict(local.clients("feed")) == {}  # nothing to show, nothing to write to Redis
    assert local.presence_channels() == []
    assert local.remove("feed", "c1") == (ALICE, False, True)


def test_presence_stats_counts_distinct_named_users() -> None:
    entries = {"c1": ALICE, "c2": BOB, "c3": ANON, "c4": ClientInfo("c4", "alice")}
    assert presence_stats(entries) == PresenceStats(num_clients=4, num_users=2)
    assert presence_stats({}) == PresenceStats(0, 0)


def test_join_and_leave_pushes_carry_the_entry() -> None:
    assert json.loads(encode_join_leave(True, "room", BOB)) == {
        "jsonrpc": "2.0",
        "method": "join",
        "params": {"channel": "room", "client": "c2", "user": "bob", "info": None, "chan_info": {"seat": 3}},
    }
    leave = json.loads(encode_join_leave(False, "room", ClientInfo("c9", "x", {"big": 2**70})))
    assert leave["method"] == "leave" and leave["params"]["info"] == {"big": 2**70}
