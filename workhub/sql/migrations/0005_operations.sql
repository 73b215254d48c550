-- Operations: maintenance-run retries, the statistics rollups and zero-copy partition archiving.
-- Every function takes the hub's clock or explicit bounds instead of calling now(), so jobs are testable.

-- a failed or abandoned scheduled run may be claimed again (a bounded number of times)
ALTER TABLE v1_hub_maintenance_runs ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS v1_hub_maintenance_runs_job ON v1_hub_maintenance_runs (job, started_at DESC);

-- ---------------------------------------------------------------- statistics rollups
-- Recomputes the daily rollups for work dates [p_from, p_to] from live and archived rows, so a rollup
-- can be rebuilt after raw rows moved to the archive. Idempotent upserts; returns rows written per table.
CREATE OR REPLACE FUNCTION v1_hub_rollup_stats(p_from date, p_to date) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n_slot     integer;
    n_client   integer;
    n_settings integer;
    t_from     timestamptz := p_from::timestamptz;
    t_to       timestamptz := (p_to + 1)::timestamptz;
BEGIN
    WITH tracking AS (
        SELECT slot_id, work_date, target_count, allocated_count, success_count, failed_count, blocked_count,
               expired_count, released_count
        FROM v1_hub_daily_work_tracking WHERE work_date BETWEEN p_from AND p_to
        UNION ALL
        SELECT slot_id, work_date, target_count, allocated_count, success_count, failed_count, blocked_count,
               expired_count, released_count
        FROM v1_hub_daily_work_tracking_archive WHERE work_date BETWEEN p_from AND p_to
    ), results AS (
        SELECT work_date, slot_id, count(*)::integer AS results, avg(execution_time_ms) AS avg_ms,
               min(rank) AS best_rank, avg(rank) AS avg_rank
        FROM (SELECT work_date, slot_id, execution_time_ms, rank FROM v1_hub_work_results
              WHERE work_date BETWEEN p_from AND p_to
              UNION ALL
              SELECT work_date, slot_id, execution_time_ms, rank FROM v1_hub_work_results_archive
              WHERE work_date BETWEEN p_from AND p_to) r
        GROUP BY work_date, slot_id
    ), joined AS (
        SELECT coalesce(t.work_date, r.work_date) AS work_date, coalesce(t.slot_id, r.slot_id) AS slot_id,
               coalesce(t.target_count, 0) AS target_count, coalesce(t.allocated_count, 0) AS allocated_count,
               coalesce(t.success_count, 0) AS success_count, coalesce(t.failed_count, 0) AS failed_count,
               coalesce(t.blocked_count, 0) AS blocked_count, coalesce(t.expired_count, 0) AS expired_count,
               coalesce(t.released_count, 0) AS released_count, coalesce(r.results, 0) AS results,
               r.avg_ms, r.best_rank, r.avg_rank
        FROM tracking t FULL JOIN results r ON r.work_date = t.work_date AND r.slot_id = t.slot_id
    )
    INSERT INTO v1_hub_stats_daily_slot AS s
        (work_date, slot_id, target_count, allocated_count, success_count, failed_count, blocked_count,
         expired_count, released_count, results, avg_execution_ms, best_rank, avg_rank)
    SELECT work_date, slot_id, target_count, allocated_count, success_count, failed_count, blocked_count,
           expired_count, released_count, results, avg_ms, best_rank, avg_rank
    FROM joined
    ON CONFLICT (work_date, slot_id) DO UPDATE SET
        target_count = EXCLUDED.target_count, allocated_count = EXCLUDED.allocated_count,
        success_count = EXCLUDED.success_count, failed_count = EXCLUDED.failed_count,
        blocked_count = EXCLUDED.blocked_count, expired_count = EXCLUDED.expired_count,
        released_count = EXCLUDED.released_count, results = EXCLUDED.results,
        avg_execution_ms = EXCLUDED.avg_execution_ms, best_rank = EXCLUDED.best_rank,
        avg_rank = EXCLUDED.avg_rank;
    GET DIAGNOSTICS n_slot = ROW_COUNT;

    WITH logs AS (
        SELECT client_ip, (reported_at AT TIME ZONE current_setting('TimeZone'))::date AS work_date,
               action, instance_number
        FROM v1_hub_client_activity_logs WHERE reported_at >= t_from AND reported_at < t_to
        UNION ALL
        SELECT client_ip, (reported_at AT TIME ZONE current_setting('TimeZone'))::date,
               action, instance_number
        FROM v1_hub_client_activity_logs_archive WHERE reported_at >= t_from AND reported_at < t_to
    ), per_log AS (
        SELECT client_ip, work_date, count(*) FILTER (WHERE action = 'allocate')::integer AS requests,
               count(DISTINCT instance_number)::integer AS active_instances
        FROM logs GROUP BY client_ip, work_date
    ), res AS (
        SELECT client_ip, work_date, count(*)::integer AS results,
               count(*) FILTER (WHERE status = 'success')::integer AS success_count,
               count(*) FILTER (WHERE status = 'failed')::integer AS failed_count,
               count(*) FILTER (WHERE status = 'blocked')::integer AS blocked_count,
               avg(execution_time_ms) AS avg_ms
        FROM (SELECT client_ip, work_date, status, execution_time_ms FROM v1_hub_work_results
              WHERE work_date BETWEEN p_from AND p_to AND client_ip IS NOT NULL
              UNION ALL
              SELECT client_ip, work_date, status, execution_time_ms FROM v1_hub_work_results_archive
              WHERE work_date BETWEEN p_from AND p_to AND client_ip IS NOT NULL) r
        GROUP BY client_ip, work_date
    )
    INSERT INTO v1_hub_stats_daily_client AS c
        (work_date, client_ip, requests, results, success_count, failed_count, blocked_count,
         active_instances, avg_execution_ms)
    SELECT coalesce(l.work_date, r.work_date), coalesce(l.client_ip, r.client_ip), coalesce(l.requests, 0),
           coalesce(r.results, 0), coalesce(r.success_count, 0), coalesce(r.failed_count, 0),
           coalesce(r.blocked_count, 0), coalesce(l.active_instances, 0), r.avg_ms
    FROM per_log l FULL JOIN res r ON r.client_ip = l.client_ip AND r.work_date = l.work_date
    ON CONFLICT (work_date, client_ip) DO UPDATE SET
        requests = EXCLUDED.requests, results = EXCLUDED.results, success_count = EXCLUDED.success_count,
        failed_count = EXCLUDED.failed_count, blocked_count = EXCLUDED.blocked_count,
        active_instances = EXCLUDED.active_instances, avg_execution_ms = EXCLUDED.avg_execution_ms;
    GET DIAGNOSTICS n_client = ROW_COUNT;

    INSERT INTO v1_hub_stats_daily_settings AS st
        (work_date, applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
         applied_block_thumbnail_cdn, total, success_count, blocked_count, sum_execution_ms)
    SELECT work_date, coalesce(applied_cart_click, false), coalesce(applied_block_mercury, false),
           coalesce(applied_block_image_cdn, false), coalesce(applied_block_img1a_cdn, false),
           coalesce(applied_block_thumbnail_cdn, false), count(*)::integer,
           count(*) FILTER (WHERE status = 'success')::integer,
           count(*) FILTER (WHERE status = 'blocked')::integer,
           coalesce(sum(execution_time_ms), 0)::bigint
    FROM (SELECT work_date, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
                 applied_block_img1a_cdn, applied_block_thumbnail_cdn, status, execution_time_ms
          FROM v1_hub_work_results WHERE work_date BETWEEN p_from AND p_to
          UNION ALL
          SELECT work_date, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
                 applied_block_img1a_cdn, applied_block_thumbnail_cdn, status, execution_time_ms
          FROM v1_hub_work_results_archive WHERE work_date BETWEEN p_from AND p_to) r
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (work_date, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
                 applied_block_img1a_cdn, applied_block_thumbnail_cdn) DO UPDATE SET
        total = EXCLUDED.total, success_count = EXCLUDED.success_count,
        blocked_count = EXCLUDED.blocked_count, sum_execution_ms = EXCLUDED.sum_execution_ms;
    GET DIAGNOSTICS n_settings = ROW_COUNT;

    RETURN jsonb_build_object('stats_daily_slot', n_slot, 'stats_daily_client', n_client,
                              'stats_daily_settings', n_settings);
END;
$$;

-- ---------------------------------------------------------------- partition archiving (zero copy)
-- Moves every range partition of p_parent whose upper bound is at or before p_cutoff to p_archive:
-- DETACH from the live table, rename <parent>_yXXXX -> <archive>_yXXXX, ATTACH to the archive with the
-- same bounds. The rows never leave their table, so nothing can be lost or duplicated on the way.
-- Returns [{partition, archived_as, rows, from, to}].
CREATE OR REPLACE FUNCTION v1_hub_archive_partitions(p_parent text, p_archive text, p_cutoff timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    part     record;
    bounds   text[];
    new_name text;
    n        bigint;
    moved    jsonb := '[]';
BEGIN
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = p_parent::regclass AND c.relispartition
          AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        ORDER BY c.relname
    LOOP
        bounds := regexp_match(part.bound, 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)');
        CONTINUE WHEN bounds IS NULL OR bounds[2]::timestamptz > p_cutoff;
        IF left(part.relname, length(p_parent)) = p_parent THEN
            new_name := p_archive || substr(part.relname, length(p_parent) + 1);
        ELSE
            new_name := left(p_archive || '_' || part.relname, 63);
        END IF;
        EXECUTE format('SELECT count(*) FROM %I', part.relname) INTO n;
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', p_parent, part.relname);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part.relname, new_name);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       p_archive, new_name, bounds[1], bounds[2]);
        moved := moved || jsonb_build_object('partition', part.relname, 'archived_as', new_name, 'rows', n,
                                             'from', bounds[1]::timestamptz, 'to', bounds[2]::timestamptz);
    END LOOP;
    RETURN moved;
END;
$$;

-- ---------------------------------------------------------------- client counters
-- The activity log is counted into v1_hub_clients by time window: each run counts [horizon, new horizon)
-- and moves the horizon in the same transaction, so every log row is counted exactly once.
CREATE TABLE IF NOT EXISTS v1_hub_counter_watermarks (
    name        text PRIMARY KEY,
    horizon     timestamptz,                  -- NULL: nothing counted yet
    updated_at  timestamptz NOT NULL DEFAULT now()
);
