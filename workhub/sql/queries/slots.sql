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
ON CONFLICT (coalesce(external_site_id, 0), external_ref) WHERE external_ref IS NOT NULL DO NOTHING
RETURNING *;

-- name: slot_by_ref
SELECT * FROM v1_hub_work_slots
WHERE external_site_id IS NOT DISTINCT FROM %(site_id)s::integer AND external_ref = %(external_ref)s;

-- name: get_slot
SELECT * FROM v1_hub_work_slots
WHERE id = %(slot_id)s AND (%(site_id)s::integer IS NULL OR external_site_id = %(site_id)s);

-- name: lock_slot
SELECT * FROM v1_hub_work_slots
WHERE id = %(slot_id)s AND (%(site_id)s::integer IS NULL OR external_site_id = %(site_id)s)
FOR UPDATE;

-- Today's ledger row (the `today` of a slot, as list_slots shows it too); before the day's row exists
-- (no allocation yet, midnight job not run) a working slot shows its untouched target.
-- name: slot_today
SELECT * FROM v1_hub_slot_day(%(slot_id)s::integer, %(work_date)s::date);

-- Keyset pagination on id; every filter is optional (NULL = any). `today` is slot_today's row, as JSON.
-- name: list_slots
SELECT s.*, (SELECT to_jsonb(d) FROM v1_hub_slot_day(s.id, %(work_date)s::date) d) AS today
FROM v1_hub_work_slots s
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
       expired_count, released_count, v1_hub_remaining_count(target_count, success_count) AS remaining_count,
       v1_hub_completion_rate(target_count, success_count) AS completion_rate,
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
