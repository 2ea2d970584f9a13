"""Failover of a routed campaign: unsent chunks of a connection that is down move to the
next connection that can take them, recorded in the ledger (see ``moves``, ``sender``)."""

from sms_provider.data.failover.moves import MOVED, MOVED_SHARD_BASE, Move, MoveBook
from sms_provider.data.failover.sender import FailoverSender, Leg, leg_summary

__all__ = ["MOVED", "MOVED_SHARD_BASE", "FailoverSender", "Leg", "Move", "MoveBook",
           "leg_summary"]
