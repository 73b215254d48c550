-- Health and plumbing.

-- name: set_actor
SELECT set_config('workhub.actor', %(actor)s, true);

-- name: ping
SELECT 1;

-- name: schema_version
SELECT migration_id FROM _yoyo_migration ORDER BY migration_id;

-- name: server_version
SELECT current_setting('server_version_num')::integer AS version_num, current_setting('server_version') AS version;
