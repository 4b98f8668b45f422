"""What every table of the schema shares: the metadata (with its naming convention) and the
column types (storage/schema.py and storage/schema_events.py define the tables)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from orchestra.storage.column_types import UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


IDENTIFIER = sa.String(100)
UUID = sa.String(36)
JSON = sa.JSON()


def dates() -> list[sa.Column[Any]]:
    return [
        sa.Column("creation_date", UTCDateTime(), nullable=False),
        sa.Column("update_date", UTCDateTime(), nullable=False),
    ]
