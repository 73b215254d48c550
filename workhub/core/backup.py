"""Backup and restore with the PostgreSQL client tools (seed 000 section 7).

`backup` = ``pg_dump -t 'v1_hub_*' --clean --if-exists --no-owner --no-privileges`` into a plain SQL file
(the seed's format, so `psql -f` restores it by hand too); `restore` = ``psql --single-transaction
-v ON_ERROR_STOP=1`` on that file. The SQL functions are not `v1_hub_*` tables, so restore first makes
sure the schema migrations ran on the target; the dump then replaces the tables with their backed-up
contents in one transaction (all or nothing).

The tools must match the server: pg_dump refuses a server newer than itself, so we pick the binary whose
major version equals the server's (or, failing that, the oldest newer one) among HUB_PG_BIN_DIR, the
embedded server's bundled tools, /usr/lib/postgresql/*/bin and PATH.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workhub.config import Settings
from workhub.db import embedded
from workhub.errors import HubError

DUMP_HEADER = "-- PostgreSQL database dump"
TABLE_PATTERN = "v1_hub_*"


class BackupError(HubError):
    def __init__(self, code: str, message: str, details=None, status: int = 500):
        super().__init__(status, code, message, details)


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int
    version: str


# ---------------------------------------------------------------- finding the right binaries
def candidate_dirs(settings: Settings) -> list[Path]:
    if settings.pg_bin_dir is not None:
        return [Path(settings.pg_bin_dir)]  # the operator chose: look nowhere else
    dirs: list[Path] = []
    with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR; irrelevant here
        warnings.simplefilter("ignore")
        dirs.append(embedded.bin_dir())  # pgserver is a dependency: its bundled client tools
    dirs += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    dirs += [Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"))]  # RPM layout
    dirs += [Path(p) for p in sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin"))]
    for name in ("pg_dump", "psql"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).resolve().parent)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(path: Path) -> Tool | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=15,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    full = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    return Tool(path, int(match.group(1)), f"{path.name} {full.group(1) if full else match.group(1)}")


def find_tool(settings: Settings, name: str, server_major: int) -> Tool:
    """The ``name`` binary (pg_dump or psql) whose major version fits a server of ``server_major``."""
    dirs = candidate_dirs(settings)
    tools = [t for t in (tool_version(d / name) for d in dirs if (d / name).is_file()) if t is not None]
    if not tools:
        hint = (f"HUB_PG_BIN_DIR={settings.pg_bin_dir} has no usable {name}" if settings.pg_bin_dir
                else f"install the PostgreSQL {server_major} client tools "
                     f"(e.g. apt install postgresql-client-{server_major}) or set HUB_PG_BIN_DIR")
        raise BackupError("pg_tool_missing", f"{name} was not found: {hint}.",
                          {"looked_in": [str(d) for d in dirs]})
    exact = [t for t in tools if t.major == server_major]
    if exact:
        return exact[0]
    newer = sorted((t for t in tools if t.major > server_major), key=lambda t: t.major)
    if newer:
        return newer[0]
    found = ", ".join(f"{t.path} ({t.major})" for t in tools)
    raise BackupError("pg_tool_version_mismatch",
                      f"The server runs PostgreSQL {server_major} but the only {name} found are older: "
                      f"{found}. Install postgresql-client-{server_major} or set HUB_PG_BIN_DIR.",
                      {"server_major": server_major, "found": [t.major for t in tools]})


# ---------------------------------------------------------------- connection without secrets on argv
def tool_env(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password (process lists are world-readable) and the env carrying it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, "PGAPPNAME": "workhub-backup", "PGCONNECT_TIMEOUT": "15"}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def server_major(url: str) -> int:
    import psycopg

    from workhub.db import queries as q

    try:
        with psycopg.connect(url, connect_timeout=15) as conn:
            return int(conn.execute(q.sql("server_version")).fetchone()[0]) // 10000
    except psycopg.OperationalError as exc:
        raise BackupError("database_unavailable", "Cannot connect to the database.",
                          {"reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
                          status=503) from None


def default_backup_name(settings: Settings) -> str:
    return f"backup_{settings.now().astimezone(settings.tz):%Y%m%d}.sql"


def backup_dir(settings: Settings) -> Path:
    """Where backups go and are looked for (API, CLI, dashboard): HUB_BACKUP_DIR, else <data_dir>/backups."""
    return Path(settings.backup_dir) if settings.backup_dir else settings.data_dir / "backups"


# ---------------------------------------------------------------- backup
def table_count(url: str) -> int:
    import psycopg

    from workhub.db import queries as q

    with psycopg.connect(url, connect_timeout=15) as conn:
        return len(conn.execute(q.sql("backup_table_names")).fetchall())


def backup(settings: Settings, url: str, out: Path, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """pg_dump the hub's tables into ``out``; ``progress(done, total, table)`` per table dumped."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BackupError("bad_backup_path", f"{out} is a directory; give a file name.", status=422)
    out.parent.mkdir(parents=True, exist_ok=True)
    major = server_major(url)
    tool = find_tool(settings, "pg_dump", major)
    total = table_count(url)
    conninfo, env = tool_env(url)
    partial = out.with_name(out.name + ".partial")
    args = [str(tool.path), "--dbname", conninfo, "--table", TABLE_PATTERN, "--clean", "--if-exists",
            "--no-owner", "--no-privileges", "--verbose", "--file", str(partial)]
    started = datetime.now().astimezone()
    done, errors = 0, []
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # --verbose names each table as its data is dumped
        line = line.rstrip()
        m = re.search(r'dumping contents of table "?(?:[\w]+\.)?"?([\w]+)"?', line)
        if m:
            done += 1
            if progress:
                progress(min(done, total), total, m.group(1))
        elif "error" in line.lower() or "fatal" in line.lower():
            errors.append(line)
    code = proc.wait()
    if code != 0:
        partial.unlink(missing_ok=True)
        raise BackupError("pg_dump_failed", f"pg_dump exited with {code}: "
                          + ("; ".join(errors)[-800:] or "no error output"), {"pg_dump": str(tool.path)})
    os.replace(partial, out)
    return {"file": str(out), "bytes": out.stat().st_size, "tables": done, "pg_dump": str(tool.path),
            "pg_dump_version": tool.version, "server_major": major, "started_at": started.isoformat()}


# ---------------------------------------------------------------- restore
def check_backup_file(path: Path) -> dict:
    """Refuses anything that is not a plain-SQL pg_dump of the hub's tables, before touching the database."""
    path = Path(path)
    if not path.exists():
        raise BackupError("backup_not_found", f"No such file: {path}.", status=404)
    if not path.is_file():
        raise BackupError("bad_backup_file", f"{path} is not a file.", status=422)
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        if head.startswith(b"PGDMP"):
            raise BackupError("bad_backup_file", f"{path} is a pg_dump custom-format archive; "
                              "workhub restores plain SQL dumps made by `workhub backup`.", status=422) from None
        text = ""
    if DUMP_HEADER not in text[:2000]:
        raise BackupError("bad_backup_file", f"{path} is not a PostgreSQL dump (no '{DUMP_HEADER}' header).",
                          status=422)
    if "v1_hub_" not in text and "v1_hub_" not in path.read_text(encoding="utf-8", errors="replace"):
        raise BackupError("bad_backup_file", f"{path} holds no workhub tables (v1_hub_*).", status=422)
    m = re.search(r"-- Dumped from database version (\d+)", text)
    return {"dumped_from_major": int(m.group(1)) if m else None, "bytes": path.stat().st_size}


def restore(settings: Settings, url: str, path: Path,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Replaces the hub's tables with the backup's contents, in one transaction; ``progress(bytes, total)``."""
    info = check_backup_file(path)
    major = server_major(url)
    tool = find_tool(settings, "psql", major)
    _prepare_schema(settings, url)
    conninfo, env = tool_env(url)
    env["PGOPTIONS"] = f"-c TimeZone={settings.timezone}"
    args = [str(tool.path), "--dbname", conninfo, "--no-psqlrc", "--quiet", "--single-transaction",
            "-v", "ON_ERROR_STOP=1", "--file", "-"]
    proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    total, sent = info["bytes"], 0
    assert proc.stdin is not None and proc.stderr is not None
    # stderr is drained by a thread so a chatty psql can never block us while we feed it
    import threading

    err_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                proc.stdin.write(chunk)
                sent += len(chunk)
                if progress:
                    progress(sent, total)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped on an error; its message follows
    code = proc.wait()
    drain.join(timeout=30)
    stderr = b"".join(err_chunks).decode("utf-8", errors="replace").strip()
    if code != 0:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        raise BackupError("restore_failed", "psql stopped; nothing was changed (single transaction): "
                          + ("; ".join(lines[-3:]) or f"exit code {code}"),
                          {"psql": str(tool.path), "dumped_from_major": info["dumped_from_major"],
                           "server_major": major})
    _after_restore(settings, url)
    return {"file": str(path), "bytes": total, "psql": str(tool.path), "server_major": major,
            "dumped_from_major": info["dumped_from_major"]}


def _prepare_schema(settings: Settings, url: str) -> None:
    """A fresh database gets the migrations (functions, triggers) the dump's tables rely on."""
    import psycopg

    from workhub.db import migrate
    from workhub.db import queries as q

    with psycopg.connect(url, connect_timeout=15) as conn:
        migrated = conn.execute(q.sql("migrations_table_exists")).fetchone()[0]
    if not migrated:
        migrate.migrate(url, settings.timezone, months_ahead=settings.partitions_months_ahead,
                        weeks_ahead=settings.partitions_weeks_ahead)


def _after_restore(settings: Settings, url: str) -> None:
    """An older backup may predate this month's partitions: create them now."""
    import psycopg

    from workhub.db import queries as q

    with psycopg.connect(url, connect_timeout=15, options=f"-c TimeZone={settings.timezone}") as conn:
        conn.execute(q.sql("ensure_partitions"), {"now": settings.now(),
                                                  "months_ahead": settings.partitions_months_ahead,
                                                  "weeks_ahead": settings.partitions_weeks_ahead})


async def backup_async(settings: Settings, url: str, out: Path,
                       progress: Callable[[int, int, str], None] | None = None) -> dict:
    """The same backup, off the event loop (the API, the CLI and the scheduler use this)."""
    return await asyncio.to_thread(backup, settings, url, out, progress)


def list_backups(settings: Settings, limit: int | None = None) -> list[dict]:
    """The backup files in backup_dir (``backup_*.sql``), newest first."""
    folder = backup_dir(settings)
    try:
        if not folder.is_dir():
            return []
        files = sorted(((p, p.stat()) for p in folder.glob("backup_*.sql")), key=lambda f: f[1].st_mtime,
                       reverse=True)
    except OSError:
        return []
    return [{"name": p.name, "bytes": st.st_size, "modified_at": datetime.fromtimestamp(st.st_mtime).astimezone()}
            for p, st in files[:limit]]


async def recorded_backup(db, settings: Settings, out: Path | None = None, run_by: str | None = None,
                          progress: Callable[[int, int, str], None] | None = None) -> dict | None:
    """A backup recorded as a maintenance run (job 'backup'); pg_dump runs off the event loop.

    ``out`` defaults to backup_dir/backup_YYYYMMDD.sql; the run's ``rows_affected["pg_dump"]`` holds what
    :func:`backup` returned (or the error)."""
    from workhub.core import maintenance

    target = Path(out) if out else backup_dir(settings) / default_backup_name(settings)

    async def body(run) -> None:
        await run.step("pg_dump", lambda: backup_async(settings, db.url, target, progress))

    return await maintenance.run_recorded(db, settings, "backup", body, run_by=run_by)
