-- Analysis: the operations guide's statistics (seed 000 sections 3.3, 3.4, 6), rank history, daily trends.
-- Each keeps the guide's grouping and formulas so its numbers equal the guide's query on the same data.

-- name: analysis_client_performance
-- Seed 3.3 for one work day (the guide's `reported_at >= CURRENT_DATE` is today's case), from the day's
-- client rollup (migration 0009) up to its mark and the raw log rows from the mark to the day's end; a
-- day without a mark is read raw. One statement, so the rollup and its mark are one snapshot. Sums over
-- counts, so avg_time is the guide's AVG (the same numeric division) and the other figures its counts.
WITH mark AS (
    SELECT m.day_start, m.rolled_until
    FROM v1_hub_client_day_marks m
    WHERE m.day_start = %(day)s::date::timestamptz AND m.day_end = (%(day)s::date + 1)::timestamptz
), parts AS (
    SELECT r.client_ip, r.instance_number, r.tasks, r.timed, r.sum_execution_ms, r.successes, r.failures,
           r.blocks, r.results, r.last_activity
    FROM v1_hub_client_day_rollup r JOIN mark USING (day_start)
    UNION ALL
    SELECT s.*
    -- the mark as a lateral column, not a sub-select argument, which would keep the function from being inlined
    FROM (SELECT coalesce((SELECT rolled_until FROM mark), %(day)s::date::timestamptz) AS since) tail,
         LATERAL v1_hub_client_log_sums(tail.since, (%(day)s::date + 1)::timestamptz) s
)
SELECT c.client_ip,
       c.client_name,
       count(DISTINCT p.instance_number) AS active_instances,
       sum(p.tasks)::bigint AS today_tasks,
       sum(p.sum_execution_ms) / nullif(sum(p.timed), 0) AS avg_time,
       sum(p.successes)::bigint AS successes,
       sum(p.failures)::bigint AS failures,
       sum(p.blocks)::bigint AS blocks,
       sum(p.results)::bigint AS results,
       max(p.last_activity) AS last_activity,
       c.last_seen_at
FROM parts p
JOIN v1_hub_clients c ON c.client_ip = p.client_ip
GROUP BY c.client_ip, c.client_name, c.last_seen_at
ORDER BY today_tasks DESC, c.client_ip;

-- name: analysis_client_rollup
-- Advances one day's client rollup (migration 0009) to what has closed; the minute job's step.
SELECT rolled_until, log_rows FROM v1_hub_client_day_rollup(%(day)s::date, %(now)s::timestamptz);

-- name: analysis_client_performance_rollup
-- The same day from the weekly rollup, once the raw activity log has been retired.
SELECT r.client_ip,
       c.client_name,
       r.active_instances,
       (r.requests + r.results) AS today_tasks,
       r.avg_execution_ms AS avg_time,
       r.success_count AS successes,
       r.failed_count AS failures,
       r.blocked_count AS blocks,
       r.results,
       NULL::timestamptz AS last_activity,
       c.last_seen_at
FROM v1_hub_stats_daily_client r
LEFT JOIN v1_hub_clients c ON c.client_ip = r.client_ip
WHERE r.work_date = %(day)s::date
ORDER BY today_tasks DESC, r.client_ip;

-- name: analysis_settings_rollup
-- Rolls up what has closed since the chain of settings spans from `from` ended (migration 0007); returns
-- the chain's span ids and its end, where raw rows take over.
SELECT span_ids, chain_end FROM v1_hub_settings_rollup(%(from)s::timestamptz, %(now)s::timestamptz);

-- name: analysis_settings_effect
-- Seed 3.4 from three parts that never overlap:
--   raw:    v1_hub_work_results from raw_from (the end of the rolled-up chain) on;
--   rolled: the chain's spans (created_at ranges rolled up with the guide's sums, migration 0007);
--   legacy: days older than the raw retention (retain_from), from the weekly rollup.
-- avg_time and success_rate are sums over counts, so they equal the guide's AVG and ratio.
WITH raw AS (
    SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn,
           applied_block_img1a_cdn, applied_block_thumbnail_cdn,
           count(*) AS total,
           count(execution_time_ms) AS timed,
           sum(execution_time_ms) AS sum_ms,
           sum(CASE WHEN status = 'success' THEN 1 ELSE 0 END) AS successes,
           count(*) FILTER (WHERE is_blocked) AS blocked
    FROM v1_hub_work_results
    WHERE created_at >= %(raw_from)s::timestamptz
    GROUP BY 1, 2, 3, 4, 5
), rolled AS (
    SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn,
           applied_block_img1a_cdn, applied_block_thumbnail_cdn,
           sum(total) AS total, sum(timed) AS timed, sum(sum_execution_ms) AS sum_ms,
           sum(success_count) AS successes, sum(blocked_count) AS blocked
    FROM v1_hub_stats_settings_by_span
    WHERE span_id = ANY (%(span_ids)s::bigint[])
    GROUP BY 1, 2, 3, 4, 5
), legacy AS (
    SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn,
           applied_block_img1a_cdn, applied_block_thumbnail_cdn,
           sum(total) AS total, sum(total) AS timed, sum(sum_execution_ms) AS sum_ms,
           sum(success_count) AS successes, sum(blocked_count) AS blocked
    FROM v1_hub_stats_daily_settings
    WHERE work_date >= %(from_date)s::date AND work_date < %(retain_from)s::date
    GROUP BY 1, 2, 3, 4, 5
), combined AS (
    SELECT * FROM raw UNION ALL SELECT * FROM rolled UNION ALL SELECT * FROM legacy
)
SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn,
       applied_block_img1a_cdn, applied_block_thumbnail_cdn,
       sum(total)::bigint AS total,
       sum(sum_ms)::numeric / nullif(sum(timed), 0) AS avg_time,
       sum(successes)::numeric / sum(total) * 100 AS success_rate,
       sum(blocked)::numeric / sum(total) * 100 AS block_rate
FROM combined
GROUP BY 1, 2, 3, 4, 5
HAVING sum(total) >= %(min_sample)s
ORDER BY success_rate DESC, total DESC;

-- name: analysis_block_types
-- Seed 6 ("block rate per block type") over the last `hours` hours, with the affected clients.
WITH window_results AS (
    SELECT count(*) AS total FROM v1_hub_work_results WHERE created_at >= %(since)s::timestamptz
)
SELECT b.block_type,
       count(*) AS count,
       count(DISTINCT b.client_ip) AS affected_clients,
       (array_agg(DISTINCT host(b.client_ip)) FILTER (WHERE b.client_ip IS NOT NULL))[1:20] AS clients,
       count(DISTINCT b.proxy_id) AS affected_proxies,
       round(100.0 * count(*) / nullif(max(w.total), 0), 2) AS share_of_results,
       max(b.created_at) AS last_seen_at
FROM v1_hub_work_results b, window_results w
WHERE b.is_blocked = true
  AND b.created_at >= %(since)s::timestamptz
GROUP BY b.block_type
ORDER BY count DESC, b.block_type NULLS LAST;

-- name: analysis_slot_exists
SELECT id, keyword, code FROM v1_hub_work_slots WHERE id = %(slot_id)s;

-- name: analysis_rank_history
-- Per work day: the slot's product as found by the checks (product rows carrying the slot's code,
-- else the rank reported with the result); days whose raw rows are archived come from the rollup.
WITH slot AS (
    SELECT id, code FROM v1_hub_work_slots WHERE id = %(slot_id)s
), products AS (
    SELECT p.work_date, count(*) AS samples, min(p.rank) AS best_rank, avg(p.rank) AS avg_rank,
           (array_agg(p.rank ORDER BY p.created_at DESC, p.id DESC))[1] AS last_rank
    FROM v1_hub_product_results p JOIN slot s ON p.slot_id = s.id AND p.code = s.code
    WHERE p.work_date >= %(from_date)s::date AND p.rank IS NOT NULL
    GROUP BY p.work_date
), reported AS (
    SELECT r.work_date, count(*) AS samples, min(r.rank) AS best_rank, avg(r.rank) AS avg_rank,
           (array_agg(r.rank ORDER BY r.created_at DESC, r.id DESC))[1] AS last_rank
    FROM v1_hub_work_results r JOIN slot s ON r.slot_id = s.id
    WHERE r.created_at >= %(from_date)s::date::timestamptz AND r.work_date >= %(from_date)s::date
      AND r.rank IS NOT NULL
    GROUP BY r.work_date
), rolled AS (
    SELECT d.work_date, d.results AS samples, d.best_rank, d.avg_rank, NULL::integer AS last_rank
    FROM v1_hub_stats_daily_slot d JOIN slot s ON d.slot_id = s.id
    WHERE d.work_date >= %(from_date)s::date AND d.best_rank IS NOT NULL
)
SELECT work_date, samples, best_rank, round(avg_rank::numeric, 2) AS avg_rank, last_rank, source
FROM (
    SELECT *, 'products' AS source FROM products
    UNION ALL
    SELECT *, 'results' FROM reported WHERE work_date NOT IN (SELECT work_date FROM products)
    UNION ALL
    SELECT *, 'rollup' FROM rolled
    WHERE work_date NOT IN (SELECT work_date FROM products) AND work_date NOT IN (SELECT work_date FROM reported)
) h
ORDER BY work_date;

-- name: refresh_daily_totals
SELECT v1_hub_refresh_daily_totals(%(from)s::date, %(before)s::date);

-- name: analysis_daily_trends
-- One row per day of the window (days without work included): the closed days' totals (migration 0008;
-- exact: a changed day is stale and summed live again), else the live ledger, else the archived rollup.
WITH days AS (
    SELECT d::date AS work_date
    FROM generate_series(%(to_date)s::date - (%(days)s - 1), %(to_date)s::date, interval '1 day') AS d
), closed AS (
    SELECT work_date, slots, target, allocated, success, failed, blocked, expired, released
    FROM v1_hub_daily_totals
    WHERE work_date BETWEEN %(to_date)s::date - (%(days)s - 1) AND %(to_date)s::date - 2 AND NOT stale
), live AS (   -- one index range per day not closed (today, yesterday, a stale day)
    SELECT d.work_date, x.*
    FROM days d
    CROSS JOIN LATERAL (
        SELECT count(*) AS slots, sum(t.target_count) AS target, sum(t.allocated_count) AS allocated,
               sum(t.success_count) AS success, sum(t.failed_count) AS failed, sum(t.blocked_count) AS blocked,
               sum(t.expired_count) AS expired, sum(t.released_count) AS released
        FROM v1_hub_daily_work_tracking t WHERE t.work_date = d.work_date) x
    WHERE x.slots > 0 AND NOT EXISTS (SELECT 1 FROM closed c WHERE c.work_date = d.work_date)
), ledger AS (
    SELECT * FROM closed UNION ALL SELECT * FROM live
), rolled AS (
    SELECT work_date, count(*) AS slots, sum(target_count) AS target, sum(allocated_count) AS allocated,
           sum(success_count) AS success, sum(failed_count) AS failed, sum(blocked_count) AS blocked,
           sum(expired_count) AS expired, sum(released_count) AS released
    FROM v1_hub_stats_daily_slot
    WHERE work_date BETWEEN %(to_date)s::date - (%(days)s - 1) AND %(to_date)s::date
    GROUP BY work_date
)
SELECT d.work_date,
       coalesce(l.slots, r.slots, 0)::bigint AS slots,
       coalesce(l.target, r.target, 0)::bigint AS target,
       coalesce(l.allocated, r.allocated, 0)::bigint AS allocated,
       coalesce(l.success, r.success, 0)::bigint AS success,
       coalesce(l.failed, r.failed, 0)::bigint AS failed,
       coalesce(l.blocked, r.blocked, 0)::bigint AS blocked,
       coalesce(l.expired, r.expired, 0)::bigint AS expired,
       coalesce(l.released, r.released, 0)::bigint AS released,
       CASE WHEN coalesce(l.target, r.target, 0) > 0
            THEN round(100.0 * coalesce(l.success, r.success) / coalesce(l.target, r.target), 2)
            END AS completion_rate,
       CASE WHEN l.work_date IS NOT NULL THEN 'live' WHEN r.work_date IS NOT NULL THEN 'rollup' END AS source
FROM days d
LEFT JOIN ledger l ON l.work_date = d.work_date
LEFT JOIN rolled r ON r.work_date = d.work_date
ORDER BY d.work_date;
