"""The ledger's one table and the statements every request runs, built once.
"""


from __future__ import annotations

import sqlalchemy as sa

from sms_provider.data.ledger.states import ChunkState

_metadata = sa.MetaData()
chunks_table = sa.Table(
    "sms_send_chunks", _metadata,
    sa.Column("campaign_id", sa.String(200), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("chunk", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("recipients", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("outcome", sa.Text),  # JSON, one entry per recipient of the chunk
    sa.Column("intent_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("owner", sa.Text),  # JSON: the SenderIdentity of the latest intent
    sa.Column("lease_until", sa.Float),  # the owner's claim on its intent lasts until then
)
#: columns later releases added, with their SQL type: an older ledger gets them on opening
_ADDED_COLUMNS = {"owner": "TEXT", "lease_until": "FLOAT"}


# The two statements every request runs, built once: constructing SQLAlchemy
# expressions per call cost more than SQLite's own work.
_c = chunks_table.c
_KEY = sa.and_(_c.campaign_id == sa.bindparam("k_campaign"), _c.shard == sa.bindparam("k_shard"),
               _c.chunk == sa.bindparam("k_chunk"))
_INSERT_INTENT = chunks_table.insert()
_FINISH = (chunks_table.update().where(_KEY, _c.state == ChunkState.INTENT)
           .values(state=sa.bindparam("v_state"), outcome=sa.bindparam("v_outcome"),
                   last_error=sa.bindparam("v_error"), updated_at=sa.bindparam("v_at")))
