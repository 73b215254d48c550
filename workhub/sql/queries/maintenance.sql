-- Operations: maintenance runs, retention (archive moves), rollups, partitions, client counters.
-- Archive moves are DELETE ... RETURNING feeding an INSERT in one statement: a row is either live or
-- archived, never both and never neither. No ON CONFLICT on the archive side: a clash aborts the move.

-- name: maintenance_claim_run
-- Claims a run; for a scheduled slot only once (unique index), unless the earlier attempt failed or was
-- abandoned by a dead process. No row back = someone else has it.
INSERT INTO v1_hub_maintenance_runs AS r (job, scheduled_for, started_at, run_by)
VALUES (%(job)s, %(scheduled_for)s, %(now)s, %(run_by)s)
ON CONFLICT (job, scheduled_for) WHERE scheduled_for IS NOT NULL DO UPDATE
    SET status = 'running', started_at = EXCLUDED.started_at, finished_at = NULL, error = NULL,
        rows_affected = '{}', run_by = EXCLUDED.run_by, attempts = r.attempts + 1
    WHERE r.attempts < %(max_attempts)s
      AND ((r.status = 'failed' AND r.finished_at < %(now)s - make_interval(secs => %(retry_after)s))
           OR (r.status = 'running' AND r.started_at < %(now)s - make_interval(secs => %(stale_after)s)))
RETURNING id, attempts;

-- name: maintenance_finish_run
UPDATE v1_hub_maintenance_runs
SET finished_at = %(now)s, status = %(status)s, rows_affected = %(rows_affected)s, error = %(error)s
WHERE id = %(id)s
RETURNING id, job, scheduled_for, started_at, finished_at, status, rows_affected, error, run_by, attempts;

-- name: maintenance_run_by_id
SELECT id, job, scheduled_for, started_at, finished_at, status, rows_affected, error, run_by, attempts
FROM v1_hub_maintenance_runs WHERE id = %(id)s;

-- name: maintenance_list_runs
SELECT id, job, scheduled_for, started_at, finished_at, status, rows_affected, error, run_by, attempts
FROM v1_hub_maintenance_runs
WHERE (%(job)s::text IS NULL OR job = %(job)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: maintenance_last_runs
-- The latest run of each job, and when each last succeeded.
SELECT DISTINCT ON (r.job) r.id, r.job, r.scheduled_for, r.started_at, r.finished_at, r.status,
       r.rows_affected, r.error, r.run_by, r.attempts,
       (SELECT max(o.finished_at) FROM v1_hub_maintenance_runs o
        WHERE o.job = r.job AND o.status = 'ok') AS last_ok_at,
       (SELECT count(*) FROM v1_hub_maintenance_runs f
        WHERE f.job = r.job AND f.status = 'failed' AND f.started_at >= %(failures_since)s) AS recent_failures
FROM v1_hub_maintenance_runs r
ORDER BY r.job, r.id DESC;

-- name: maintenance_prune_runs
-- The minute job's routine successes are kept for a while only; every other run is kept.
DELETE FROM v1_hub_maintenance_runs
WHERE job = 'minute' AND status = 'ok' AND started_at < %(cutoff)s;

-- name: set_local_lock_timeout
SELECT set_config('lock_timeout', %(value)s, true);

-- name: archive_allocations
WITH moved AS (
    DELETE FROM v1_hub_work_allocations a
    WHERE a.id IN (SELECT id FROM v1_hub_work_allocations
                   WHERE allocated_at < %(cutoff)s AND status <> 'allocated'
                   ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
    RETURNING a.*
)
INSERT INTO v1_hub_work_allocations_archive SELECT m.*, %(now)s::timestamptz FROM moved m;

-- name: archive_tracking
WITH moved AS (
    DELETE FROM v1_hub_daily_work_tracking t
    WHERE t.id IN (SELECT id FROM v1_hub_daily_work_tracking
                   WHERE work_date < %(cutoff_date)s AND in_flight_count = 0
                   ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
    RETURNING t.*
)
INSERT INTO v1_hub_daily_work_tracking_archive SELECT m.*, %(now)s::timestamptz FROM moved m;

-- name: archive_clients
WITH moved AS (
    DELETE FROM v1_hub_clients c
    WHERE c.id IN (SELECT id FROM v1_hub_clients
                   WHERE last_seen_at < %(cutoff)s
                   ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
    RETURNING c.*
)
INSERT INTO v1_hub_clients_archive SELECT m.*, %(now)s::timestamptz FROM moved m;

-- name: archive_external_triggers
WITH moved AS (
    DELETE FROM v1_hub_external_triggers x
    WHERE x.id IN (SELECT id FROM v1_hub_external_triggers
                   WHERE created_at < %(cutoff)s
                   ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
    RETURNING x.*
)
INSERT INTO v1_hub_external_triggers_archive SELECT m.*, %(now)s::timestamptz FROM moved m;

-- name: analyze_hot_tables
ANALYZE v1_hub_daily_work_tracking, v1_hub_work_allocations, v1_hub_proxies, v1_hub_clients,
        v1_hub_work_slots, v1_hub_work_results, v1_hub_product_results, v1_hub_client_activity_logs;

-- name: ensure_partitions
SELECT v1_hub_ensure_partitions(%(now)s, %(months_ahead)s, %(weeks_ahead)s);

-- name: archive_partitions
SELECT v1_hub_archive_partitions(%(parent)s, %(archive)s, %(cutoff)s);

-- name: client_day_rollup_prune
-- The per-client day rollup (migration 0009) of days whose activity log leaves with the retention:
-- a day it no longer stands in for is read raw (or from the weekly rollup once archived), as before.
DELETE FROM v1_hub_client_day_marks WHERE day_end <= %(cutoff)s;

-- name: rollup_stats
SELECT v1_hub_rollup_stats(%(from_date)s, %(to_date)s);

-- name: inactive_clients_report
SELECT host(client_ip) AS client_ip, client_name, first_seen_at, last_seen_at,
       request_count, result_count, success_count
FROM v1_hub_clients
WHERE last_seen_at < %(cutoff)s
ORDER BY last_seen_at
LIMIT %(limit)s;

-- name: inactive_clients_count
SELECT count(*) FROM v1_hub_clients WHERE last_seen_at < %(cutoff)s;

-- name: counter_watermark_init
INSERT INTO v1_hub_counter_watermarks (name, horizon) VALUES (%(name)s, NULL)
ON CONFLICT (name) DO NOTHING;

-- name: counter_watermark_lock
-- Two runs never count the same window: the second waits here, then starts where the first stopped.
SELECT horizon FROM v1_hub_counter_watermarks WHERE name = %(name)s FOR UPDATE;

-- name: counter_watermark_set
UPDATE v1_hub_counter_watermarks SET horizon = %(horizon)s, updated_at = %(now)s WHERE name = %(name)s;

-- name: rollup_client_counters
-- Adds the activity in [since, horizon) to each client's counters.
WITH fresh AS (
    SELECT l.client_ip, max(l.id) AS max_id,
           count(*) FILTER (WHERE l.action = 'allocate') AS requests,
           coalesce(sum((l.detail->>'allocated')::bigint)
                    FILTER (WHERE l.action = 'allocate' AND l.status = 'allocated'), 0) AS allocations,
           count(*) FILTER (WHERE l.action = 'submit') AS results,
           count(*) FILTER (WHERE l.action = 'submit' AND l.status = 'success') AS successes
    FROM v1_hub_client_activity_logs l
    WHERE l.reported_at >= %(since)s AND l.reported_at < %(horizon)s
    GROUP BY l.client_ip
)
UPDATE v1_hub_clients c
SET request_count = c.request_count + f.requests,
    allocation_count = c.allocation_count + f.allocations,
    result_count = c.result_count + f.results,
    success_count = c.success_count + f.successes,
    counted_log_id = GREATEST(c.counted_log_id, f.max_id)
FROM fresh f
WHERE c.client_ip = f.client_ip;

-- name: backup_table_names
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname LIKE 'v1\_hub\_%%' AND c.relkind IN ('r', 'p')
ORDER BY c.relname;
