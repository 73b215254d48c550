"""The embedded PostgreSQL 16 server (PyPI ``pgserver``), used when HUB_DATABASE_URL is unset.

pgserver ships the server binaries (and pg_dump, pgbench) inside the wheel, listens on a Unix socket
inside the data directory, and keeps a list of the processes using it: the server stops when the last
of them exits, so several hub processes can share one embedded server.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def bin_dir() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def start(pgdata: Path, *, max_connections: int = 400, stop_on_exit: bool = True,
          tuning: dict[str, str] | None = None) -> str:
    """Start (or join) the embedded server for ``pgdata`` and return its URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(pgdata).resolve().parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
    url = server.get_uri()
    _configure(server, url, {"max_connections": str(max_connections), **(tuning or {})})
    return server.get_uri()


def _configure(server, url: str, wanted: dict[str, str]) -> None:
    """Apply server settings once; restart only when a setting needs it (max_connections)."""
    import psycopg
    from psycopg import sql as pgsql

    from workhub.db import queries as q

    with psycopg.connect(url, autocommit=True) as conn:
        current = dict(conn.execute(q.sql("server_settings"), {"names": list(wanted)}).fetchall())
        changed = [name for name, value in wanted.items() if current.get(name) != value]
        for name in changed:
            conn.execute(pgsql.SQL(q.sql("alter_system_set")).format(
                name=pgsql.Identifier(name), value=pgsql.Literal(str(wanted[name]))))
        if changed:
            conn.execute(q.sql("reload_conf"))
        pending = conn.execute(q.sql("pending_restart_count")).fetchone()[0]
    if pending:
        log.info("restarting the embedded server to apply %s", changed)
        restart(server)


def restart(server) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    server.ensure_postgres_running()


def pg_ctl(pgdata: Path, *args: str) -> None:
    """Run the bundled pg_ctl on ``pgdata`` as the server's system user (used by fault tests)."""
    from pgserver._commands import pg_ctl as _pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    _pg_ctl(list(args), pgdata=Path(pgdata).resolve(), user=user, timeout=60)
