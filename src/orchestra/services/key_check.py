"""The check value that tells a server whether it was given the instance's key.

The database keeps a value encrypted with the instance key (`instance_setting` `key_check`),
never the key: a server whose keys cannot decrypt it refuses to start, instead of writing
secrets that no other server can read. It runs before the server's event loop, on a
synchronous connection, like the migrations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from orchestra.clock import utcnow
from orchestra.services.keyring import ENVIRONMENT_VARIABLE, Keyring, KeyringError
from orchestra.storage.engine import sync_url
from orchestra.storage.schema import instance_setting

CHECK_NAME = "key_check"
CHECK_CONTEXT = "key_check"
CHECK_TEXT = "the Orchestra instance key"


def _stored(conn: sa.Connection) -> str | None:
    query = sa.select(instance_setting.c.value).where(instance_setting.c.name == CHECK_NAME)
    value = conn.execute(query).scalar()
    return None if value is None else str(value)


def _mismatch(keyring: Keyring, stored: str) -> KeyringError:
    used = stored.split(":")[2] if Keyring.is_encrypted(stored) else "unknown"
    return KeyringError(
        f"this server's instance key ({', '.join(keyring.key_ids)}) is not the one the database "
        f"was encrypted with ({used}): give it the instance's key file (--secret-key-file) or "
        f"{ENVIRONMENT_VARIABLE}, the same on every server"
    )


def verify_key(url: str, keyring: Keyring) -> None:
    """Refuse a keyring that cannot decrypt the stored check value; store one (under the
    current key) where there is none yet."""
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            stored = _stored(conn)
            if stored is None:
                value = keyring.encrypt(CHECK_TEXT, CHECK_CONTEXT)
                try:
                    with conn.begin_nested():
                        conn.execute(
                            instance_setting.insert().values(
                                name=CHECK_NAME, value=value, update_date=utcnow()
                            )
                        )
                    return
                except IntegrityError:  # another server stored one meanwhile
                    stored = _stored(conn)
                    assert stored is not None
            try:
                keyring.decrypt(stored, CHECK_CONTEXT)
            except KeyringError:
                raise _mismatch(keyring, stored) from None
    finally:
        engine.dispose()
