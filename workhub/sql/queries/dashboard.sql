-- The web dashboard: read-only queries for the pages and their htmx partials.
-- Every page reads bounded rows (LIMIT) so the dashboard stays fast on a large ledger.

-- name: dashboard_slot_progress
-- Today's progress per slot; sort key and direction are whitelisted by the caller.
-- plan: custom
-- A generic plan cannot fold the sort CASEs and the empty search: it joined all 100k slots and sorted on
-- every CASE (169-175 ms against 73-88 ms planned with the values; docs/performance.md, finding 14).
-- psycopg prepares a query after 5 runs and PostgreSQL then prefers the generic plan (it looks cheaper).
SELECT slot_id, keyword, code, is_active, pace, target_count, allocated_count, in_flight_count,
       success_count, failed_count, blocked_count, expired_count, remaining_count, completion_rate,
       last_result_at
FROM v1_hub_work_dashboard
WHERE work_date = %(work_date)s
  AND (%(search)s::text IS NULL
       OR keyword ILIKE '%%' || %(search)s || '%%'
       OR code ILIKE '%%' || %(search)s || '%%'
       OR slot_id::text = %(search)s)
ORDER BY
    CASE WHEN %(direction)s = 'asc' THEN
        CASE %(sort)s
            WHEN 'completion' THEN completion_rate
            WHEN 'target' THEN target_count
            WHEN 'success' THEN success_count
            WHEN 'in_flight' THEN in_flight_count
            WHEN 'failed' THEN failed_count + blocked_count
            WHEN 'id' THEN slot_id
        END
    END ASC NULLS LAST,
    CASE WHEN %(direction)s = 'desc' THEN
        CASE %(sort)s
            WHEN 'completion' THEN completion_rate
            WHEN 'target' THEN target_count
            WHEN 'success' THEN success_count
            WHEN 'in_flight' THEN in_flight_count
            WHEN 'failed' THEN failed_count + blocked_count
            WHEN 'id' THEN slot_id
        END
    END DESC NULLS LAST,
    CASE WHEN %(sort)s = 'keyword' AND %(direction)s = 'asc' THEN keyword END ASC,
    CASE WHEN %(sort)s = 'keyword' AND %(direction)s = 'desc' THEN keyword END DESC,
    slot_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: dashboard_slot_progress_count
-- Without a search, the day's tracking rows alone (each has its slot): no join over 100k slots.
SELECT CASE WHEN %(search)s::text IS NULL
            THEN (SELECT count(*) FROM v1_hub_daily_work_tracking WHERE work_date = %(work_date)s)
            ELSE (SELECT count(*)
                  FROM v1_hub_work_dashboard
                  WHERE work_date = %(work_date)s
                    AND (keyword ILIKE '%%' || %(search)s || '%%'
                         OR code ILIKE '%%' || %(search)s || '%%'
                         OR slot_id::text = %(search)s)) END;

-- name: dashboard_slot
SELECT id, keyword, code, start_date, end_date, daily_work_count, cart_click_enabled, block_mercury,
       block_image_cdn, block_img1a_cdn, block_thumbnail_cdn, is_active, external_site_id, external_ref,
       max_daily_attempts, pace, created_at, updated_at
FROM v1_hub_work_slots WHERE id = %(slot_id)s;

-- name: dashboard_slot_days
-- The slot's daily ledger, oldest first, for the progress chart.
SELECT work_date, target_count, allocated_count, in_flight_count, success_count, failed_count,
       blocked_count, expired_count, released_count, completion_rate
FROM v1_hub_work_dashboard
WHERE slot_id = %(slot_id)s AND work_date > %(work_date)s - %(days)s::integer AND work_date <= %(work_date)s
ORDER BY work_date;

-- name: dashboard_slot_results
SELECT id, created_at, status, rank, page, block_type, error_message, execution_time_ms, host(client_ip) AS client_ip,
       instance_number, user_folder_number, proxy_id, late, counted
FROM v1_hub_work_results
WHERE slot_id = %(slot_id)s AND created_at >= %(since)s
ORDER BY created_at DESC
LIMIT %(limit)s;

-- name: dashboard_proxies
-- The pool without credentials: state, use budget and IP history.
SELECT id, protocol, host, port, username IS NOT NULL AS has_auth, current_ip::text AS current_ip, ip_history,
       use_count, max_uses, total_uses, status, status_reason, cooldown_until, last_heartbeat, last_used_at,
       success_count, fail_count, block_count
FROM v1_hub_proxies
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY (status = 'active') DESC, id
LIMIT %(limit)s;

-- name: dashboard_proxy_states
SELECT status, count(*) AS proxies FROM v1_hub_proxies GROUP BY status ORDER BY status;
