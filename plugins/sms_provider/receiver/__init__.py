"""The push receiver: vendors push reports and replies, we land them durably, then compact.

``sms_provider.receiver.app.create_app(config, root)`` is the ASGI app (standalone with
``python -m sms_provider.receiver``, or mounted in the Airflow API server);
``compact(root, config)`` moves landed pushes into the ``reports/``,
``inbound/`` and ``suppression/`` datasets.
"""

from __future__ import annotations

from sms_provider.receiver.compaction import CompactResult, compact
from sms_provider.receiver.config import ReceiverConfig, ReceiverConfigError

__all__ = ["CompactResult", "ReceiverConfig", "ReceiverConfigError", "compact"]
