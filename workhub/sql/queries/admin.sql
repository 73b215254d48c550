-- Server administration on plain (sync or dedicated) connections: advisory locks, migrations
-- bookkeeping, time zone and server settings. Blocks with {placeholders} are templates for
-- psycopg.sql (identifiers and literals quoted by psycopg): statements that take no bind parameters.

-- name: advisory_lock
SELECT pg_advisory_lock(%(lock_id)s);

-- name: try_advisory_lock
SELECT pg_try_advisory_lock(%(lock_id)s);

-- name: advisory_unlock
SELECT pg_advisory_unlock(%(lock_id)s);

-- name: migrations_table_exists
SELECT to_regclass('_yoyo_migration') IS NOT NULL;

-- name: applied_migrations
SELECT migration_id, applied_at_utc FROM _yoyo_migration;

-- name: set_session_timezone
SELECT set_config('TimeZone', %(timezone)s, false);

-- name: set_database_timezone
-- template: the database as an identifier, the zone as a literal
ALTER DATABASE {database} SET TimeZone = {timezone};

-- name: ensure_partitions_from_now
SELECT v1_hub_ensure_partitions(now(), %(months_ahead)s, %(weeks_ahead)s);

-- name: server_settings
SELECT name, setting FROM pg_settings WHERE name = ANY(%(names)s);

-- name: alter_system_set
-- template: the setting's name as an identifier, its value as a literal
ALTER SYSTEM SET {name} = {value};

-- name: reload_conf
SELECT pg_reload_conf();

-- name: pending_restart_count
SELECT count(*) FROM pg_settings WHERE pending_restart;
