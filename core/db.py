"""Connections the database dropped (a restart, a failover,
`pg_terminate_backend`): weeded out of the pool, and work outside a request
(the worker, the sweeper) that outlives one."""

import logging

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)


def db_retry_once(call, *args, **kwargs):
    """Run `call`, which makes its own transaction; if the database dropped the
    connection under it (a restart, `pg_terminate_backend`), run it once more
    on a new one. Inside a caller's transaction the error is the caller's."""
    try:
        return call(*args, **kwargs)
    except (OperationalError, InterfaceError) as exc:
        if connection.in_atomic_block:
            raise
        logger.warning("Database connection lost (%s); once more on a new connection", str(exc).strip())
        connection.close()
        db_pool_check()
        return call(*args, **kwargs)


def db_pool_check():
    """After a connection failed: check every idle one in the pool now, as
    psycopg_pool advises. Its own check before lending waits longer after each
    dead connection it finds, which adds up when the server dropped them all."""
    pool = getattr(connection, "pool", None)  # PostgreSQL's pool; SQLite has none
    if pool is not None:
        pool.check()
