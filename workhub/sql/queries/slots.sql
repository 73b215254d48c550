-- Work slots.

-- name: create_slot
INSERT INTO v1_hub_work_slots
    (keyword, code, start_date, end_date, daily_work_count, cart_click_enabled, block_mercury,
     block_image_cdn, block_img1a_cdn, block_thumbnail_cdn, is_active, external_site_id, external_ref,
     max_daily_attempts, pace)
VALUES (%(keyword)s, %(code)s, %(start_date)s, %(end_date)s, %(daily_work_count)s,
        coalesce(%(cart_click_enabled)s, false), coalesce(%(block_mercury)s, false),
        coalesce(%(block_image_cdn)s, false), coalesce(%(block_img1a_cdn)s, false),
        coalesce(%(block_thumbnail_cdn)s, false), coalesce(%(is_active)s, true), %(site_id)s,
        %(external_ref)s, %(max_daily_attempts)s, coalesce(%(pace)s, 'asap'))
ON CONFLICT (external_site_id, external_ref) DO NOTHING
RETURNING *;

-- name: slot_by_ref
SELECT * FROM v1_hub_work_slots WHERE external_site_id = %(site_id)s AND external_ref = %(external_ref)s;

-- name: get_slot
SELECT * FROM v1_hub_work_slots
WHERE id = %(slot_id)s AND (%(site_id)s::integer IS NULL OR external_site_id = %(site_id)s);

-- name: lock_slot
SELECT * FROM v1_hub_work_slots
WHERE id = %(slot_id)s AND (%(site_id)s::integer IS NULL OR external_site_id = %(site_id)s)
FOR UPDATE;

-- Today's ledger row; before the day's row exists (no allocation yet, midnight job not run) a working
-- slot shows its untouched target.
-- name: slot_today
SELECT %(work_date)s::date AS work_date, coalesce(t.target_count, s.daily_work_count) AS target_count,
       coalesce(t.allocated_count, 0) AS allocated_count, coalesce(t.in_flight_count, 0) AS in_flight_count,
       coalesce(t.success_count, 0) AS success_count, coalesce(t.failed_count, 0) AS failed_count,
       coalesce(t.blocked_count, 0) AS blocked_count, coalesce(t.expired_count, 0) AS expired_count,
       coalesce(t.released_count, 0) AS released_count,
       GREATEST(coalesce(t.target_count, s.daily_work_count) - coalesce(t.success_count, 0), 0) AS remaining_count,
       CASE WHEN coalesce(t.target_count, s.daily_work_count) > 0
            THEN round(100.0 * coalesce(t.success_count, 0) / coalesce(t.target_count, s.daily_work_count), 2)
            ELSE 100.00 END AS completion_rate,
       t.completed_at
FROM v1_hub_work_slots s
LEFT JOIN v1_hub_daily_work_tracking t ON t.slot_id = s.id AND t.work_date = %(work_date)s
WHERE s.id = %(slot_id)s
  AND (t.id IS NOT NULL OR (s.is_active AND %(work_date)s::date BETWEEN s.start_date AND s.end_date));

-- Keyset pagination on id; every filter is optional (NULL = any).
-- name: list_slots
SELECT s.*,
       CASE WHEN t.id IS NOT NULL OR (s.is_active AND %(work_date)s::date BETWEEN s.start_date AND s.end_date)
       THEN jsonb_build_object(
           'work_date', %(work_date)s::date, 'target_count', coalesce(t.target_count, s.daily_work_count),
           'allocated_count', coalesce(t.allocated_count, 0), 'in_flight_count', coalesce(t.in_flight_count, 0),
           'success_count', coalesce(t.success_count, 0), 'failed_count', coalesce(t.failed_count, 0),
           'blocked_count', coalesce(t.blocked_count, 0), 'expired_count', coalesce(t.expired_count, 0),
           'released_count', coalesce(t.released_count, 0),
           'remaining_count', GREATEST(coalesce(t.target_count, s.daily_work_count) - coalesce(t.success_count, 0), 0),
           'completion_rate', CASE WHEN coalesce(t.target_count, s.daily_work_count) > 0
                                   THEN round(100.0 * coalesce(t.success_count, 0)
                                              / coalesce(t.target_count, s.daily_work_count), 2)
                                   ELSE 100.00 END,
           'completed_at', t.completed_at)
       END AS today
FROM v1_hub_work_slots s
LEFT JOIN v1_hub_daily_work_tracking t ON t.slot_id = s.id AND t.work_date = %(work_date)s
WHERE (%(site_id)s::integer IS NULL OR s.external_site_id = %(site_id)s)
  AND (%(is_active)s::boolean IS NULL OR s.is_active = %(is_active)s)
  AND (%(keyword)s::text IS NULL OR s.keyword ILIKE '%%' || %(keyword)s || '%%')
  AND (%(code)s::text IS NULL OR s.code = %(code)s)
  AND (%(external_ref)s::text IS NULL OR s.external_ref = %(external_ref)s)
  AND (%(active_on)s::date IS NULL OR %(active_on)s::date BETWEEN s.start_date AND s.end_date)
  AND s.id > %(after_id)s
ORDER BY s.id
LIMIT %(limit)s;

-- name: update_slot
UPDATE v1_hub_work_slots
SET keyword = %(keyword)s, code = %(code)s, start_date = %(start_date)s, end_date = %(end_date)s,
    daily_work_count = %(daily_work_count)s, cart_click_enabled = %(cart_click_enabled)s,
    block_mercury = %(block_mercury)s, block_image_cdn = %(block_image_cdn)s,
    block_img1a_cdn = %(block_img1a_cdn)s, block_thumbnail_cdn = %(block_thumbnail_cdn)s,
    is_active = %(is_active)s, external_ref = %(external_ref)s, max_daily_attempts = %(max_daily_attempts)s,
    pace = %(pace)s
WHERE id = %(slot_id)s
RETURNING *;

-- The daily ledger of a slot over a date range, live rows and archived ones alike.
-- name: slot_progress_days
SELECT work_date, target_count, allocated_count, in_flight_count, success_count, failed_count, blocked_count,
       expired_count, released_count, GREATEST(target_count - success_count, 0) AS remaining_count,
       CASE WHEN target_count > 0 THEN round(100.0 * success_count / target_count, 2) ELSE 100.00 END
           AS completion_rate,
       first_allocated_at, last_result_at, completed_at, archived
FROM (
    SELECT work_date, target_count, allocated_count, in_flight_count, success_count, failed_count, blocked_count,
           expired_count, released_count, first_allocated_at, last_result_at, completed_at, false AS archived
    FROM v1_hub_daily_work_tracking
    WHERE slot_id = %(slot_id)s AND work_date BETWEEN %(date_from)s AND %(date_to)s
    UNION ALL
    SELECT work_date, target_count, allocated_count, in_flight_count, success_count, failed_count, blocked_count,
           expired_count, released_count, first_allocated_at, last_result_at, completed_at, true
    FROM v1_hub_daily_work_tracking_archive a
    WHERE a.slot_id = %(slot_id)s AND a.work_date BETWEEN %(date_from)s AND %(date_to)s
      AND NOT EXISTS (SELECT 1 FROM v1_hub_daily_work_tracking t
                      WHERE t.slot_id = a.slot_id AND t.work_date = a.work_date)
) d
ORDER BY work_date;

-- Rank history per day: raw results while they are kept, the daily rollup after they are archived.
-- The created_at window lets the planner prune result partitions (a day's results arrive within it).
-- name: slot_rank_history
WITH raw AS (
    SELECT work_date, count(*) AS checks, count(rank) AS ranked, min(rank) AS best_rank,
           round(avg(rank), 2)::double precision AS avg_rank,
           (array_agg(rank ORDER BY created_at DESC) FILTER (WHERE rank IS NOT NULL))[1] AS last_rank
    FROM v1_hub_work_results
    WHERE slot_id = %(slot_id)s AND work_date BETWEEN %(date_from)s AND %(date_to)s
      AND created_at >= %(date_from)s::timestamptz - interval '1 day'
      AND created_at < %(date_to)s::timestamptz + interval '3 days'
    GROUP BY work_date
)
SELECT work_date, checks, ranked, best_rank, avg_rank, last_rank, 'results' AS source FROM raw
UNION ALL
SELECT r.work_date, r.results, NULL, r.best_rank, r.avg_rank, NULL, 'rollup'
FROM v1_hub_stats_daily_slot r
WHERE r.slot_id = %(slot_id)s AND r.work_date BETWEEN %(date_from)s AND %(date_to)s
  AND NOT EXISTS (SELECT 1 FROM raw WHERE raw.work_date = r.work_date)
ORDER BY work_date;
