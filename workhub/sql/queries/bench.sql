-- Benchmarks and the large-data generator (workhub/core/bench.py, workhub/core/datagen.py).
-- Only ever run against a dedicated benchmark database (workhub_bench by default).

-- name: bench_database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(name)s);

-- name: bench_create_database
-- {db} is filled in with psycopg.sql.Identifier: CREATE DATABASE takes no bind parameters.
CREATE DATABASE {db};

-- name: bench_drop_database
DROP DATABASE IF EXISTS {db} WITH (FORCE);

-- name: bench_server_info
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::integer AS version_num,
       current_setting('max_connections')::integer AS max_connections,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('fsync') AS fsync;

-- name: bench_load_slots
-- Slots whose quota never runs out during a benchmark; the first id is returned.
WITH ins AS (
    INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count, cart_click_enabled,
                                   block_mercury, block_image_cdn, block_img1a_cdn, block_thumbnail_cdn,
                                   external_ref)
    SELECT 'bench keyword ' || g, 'BENCH' || lpad(g::text, 8, '0'), %(work_date)s::date - %(days_back)s,
           %(work_date)s::date + 365, %(target)s, g %% 2 = 0, g %% 3 = 0, g %% 5 = 0, g %% 7 = 0, g %% 11 = 0,
           %(prefix)s || g
    FROM generate_series(1, %(n)s) AS g
    ORDER BY g
    RETURNING id
)
SELECT min(id) AS first_id, max(id) AS last_id, count(*) AS n FROM ins;

-- name: bench_load_proxies
-- Proxies with a use budget that never runs out during a benchmark.
WITH ins AS (
    INSERT INTO v1_hub_proxies (host, port, protocol, max_uses)
    SELECT %(prefix)s || (g / 250) || '.' || (g %% 250 + 1), 3128 + (g %% 1000), 'http', %(max_uses)s
    FROM generate_series(0, %(n)s - 1) AS g
    ON CONFLICT ON CONSTRAINT v1_hub_proxies_endpoint DO NOTHING
    RETURNING id
)
SELECT min(id) AS first_id, max(id) AS last_id, count(*) AS n FROM ins;

-- name: bench_counts
SELECT (SELECT count(*) FROM v1_hub_work_slots) AS slots,
       (SELECT count(*) FROM v1_hub_proxies) AS proxies,
       (SELECT count(*) FROM v1_hub_daily_work_tracking) AS tracking,
       (SELECT count(*) FROM v1_hub_work_allocations) AS allocations,
       (SELECT count(*) FROM v1_hub_work_results) AS results,
       (SELECT count(*) FROM v1_hub_product_results) AS product_results,
       (SELECT count(*) FROM v1_hub_client_activity_logs) AS activity_logs,
       (SELECT count(*) FROM v1_hub_clients) AS clients;

-- name: bench_ledger_totals
-- Sums over the day's ledger: after a run, success_count equals the results counted that day.
SELECT coalesce(sum(allocated_count), 0)::bigint AS allocated,
       coalesce(sum(in_flight_count), 0)::bigint AS in_flight,
       coalesce(sum(success_count), 0)::bigint AS success,
       (SELECT count(*) FROM v1_hub_work_allocations WHERE work_date = %(work_date)s) AS allocation_rows,
       (SELECT count(*) FROM v1_hub_work_results WHERE work_date = %(work_date)s AND counted
                                                  AND status = 'success') AS counted_success
FROM v1_hub_daily_work_tracking
WHERE work_date = %(work_date)s;

-- name: bench_analyze
ANALYZE;

-- ---------------------------------------------------------------- large-data generator
-- name: datagen_partitions
-- Monthly and weekly partitions covering the generated window (idempotent).
SELECT v1_hub_ensure_partitions(%(since)s, %(months)s, %(weeks)s);

-- name: datagen_clients
INSERT INTO v1_hub_clients (client_ip, client_name, first_seen_at, last_seen_at)
SELECT '10.200.0.0'::inet + g, 'bench-client-' || g, %(since)s, %(until)s
FROM generate_series(0, %(n)s - 1) AS g
ON CONFLICT (client_ip) DO NOTHING;

-- name: datagen_tracking_days
-- Past days' ledgers (everything done), as the roll-over would have left them.
WITH days AS (
    SELECT (%(work_date)s::date - k) AS d FROM generate_series(1, %(days)s) AS k
), ins AS (
    INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, allocated_count, success_count,
                                            failed_count, blocked_count, fill_ratio, first_allocated_at,
                                            last_allocated_at, first_result_at, last_result_at, completed_at)
    SELECT s.id, days.d, s.daily_work_count,
           s.daily_work_count + s.id %% 3 + s.id %% 2, s.daily_work_count, s.id %% 3, s.id %% 2, 1,
           days.d + time '00:05', days.d + time '20:00', days.d + time '00:06', days.d + time '20:05',
           days.d + time '20:05'
    FROM days CROSS JOIN v1_hub_work_slots s
    WHERE s.id BETWEEN %(slot_lo)s AND %(slot_hi)s
    ON CONFLICT (slot_id, work_date) DO NOTHING
    RETURNING 1
), mark AS (
    INSERT INTO v1_hub_tracking_days (work_date, slots_created)
    SELECT d, 0 FROM days
    ON CONFLICT (work_date) DO NOTHING
)
SELECT count(*) FROM ins;

-- name: datagen_results_chunk
-- Results lo..hi of total, spread evenly over [since, until): one result row, one product row per
-- success, one 'submit' activity log per result, and an allocation row for results younger than
-- alloc_since (allocations are archived after 7 days). Deterministic: the same i gives the same row.
WITH g AS (
    SELECT i,
           %(since)s::timestamptz + (%(until)s::timestamptz - %(since)s::timestamptz) * (i::float8 / %(total)s)
               AS ts,
           %(slot_lo)s + ((i * 48271) %% %(n_slots)s)::integer AS slot_id,
           %(proxy_lo)s + ((i * 16807) %% %(n_proxies)s)::integer AS proxy_id,
           '10.200.0.0'::inet + (i %% %(n_clients)s) AS client_ip,
           CASE WHEN (i * 7919) %% 100 < 80 THEN 'success'
                WHEN (i * 7919) %% 100 < 92 THEN 'failed' ELSE 'blocked' END AS status,
           (i %% 32)::integer AS bits
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
), r AS (
    INSERT INTO v1_hub_work_results
        (created_at, allocation_key, slot_id, work_date, client_ip, instance_number, user_folder_number,
         proxy_id, status, is_blocked, block_type, error_message, execution_time_ms, rank, page,
         applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
         applied_block_thumbnail_cdn, late, counted, result_data)
    SELECT ts, gen_random_uuid(), slot_id, ts::date, client_ip, (i %% 8)::integer + 1,
           (i %% 20)::integer + 1, proxy_id, status, status = 'blocked',
           CASE WHEN status = 'blocked' THEN (ARRAY['captcha', 'ip_ban', 'rate_limit'])[(i %% 3)::integer + 1] END,
           CASE WHEN status = 'failed' THEN 'timeout' END,
           2000 + ((i * 31) %% 9000)::integer,
           CASE WHEN status = 'success' THEN 1 + ((i * 13) %% 200)::integer END,
           CASE WHEN status = 'success' THEN 1 + ((i * 13) %% 200)::integer / 40 END,
           bits & 1 = 1, bits & 2 = 2, bits & 4 = 4, bits & 8 = 8, bits & 16 = 16, false, true,
           jsonb_build_object('generated', true)
    FROM g
    RETURNING id, created_at, allocation_key, slot_id, work_date, client_ip, instance_number,
              user_folder_number, proxy_id, status, execution_time_ms, rank, page
), p AS (
    INSERT INTO v1_hub_product_results (created_at, result_id, slot_id, work_date, code, name, price, rank,
                                        page)
    SELECT r.created_at, r.id, r.slot_id, r.work_date, 'BENCH' || lpad(r.slot_id::text, 8, '0'),
           'bench product ' || r.slot_id, 1000 + r.slot_id %% 90000, r.rank, r.page
    FROM r WHERE r.status = 'success'
    RETURNING 1
), l AS (
    INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, instance_number, user_folder_number,
                                             action, status, execution_time_ms, slot_id, detail)
    SELECT r.created_at, r.client_ip, r.instance_number, r.user_folder_number, 'submit', r.status,
           r.execution_time_ms, r.slot_id, jsonb_build_object('result_id', r.id, 'late', false, 'counted', true)
    FROM r
    RETURNING 1
), a AS (
    INSERT INTO v1_hub_work_allocations (allocation_key, slot_id, tracking_id, work_date, client_ip,
                                         instance_number, user_folder_number, proxy_id, settings, status,
                                         allocated_at, expires_at, submitted_at, result_id, result_status,
                                         counted)
    SELECT r.allocation_key, r.slot_id, 0, r.work_date, r.client_ip, r.instance_number, r.user_folder_number,
           r.proxy_id, '{}'::jsonb, 'submitted', r.created_at - interval '6 seconds',
           r.created_at + interval '294 seconds', r.created_at, r.id, r.status, true
    FROM r WHERE r.created_at >= %(alloc_since)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM r) AS results, (SELECT count(*) FROM p) AS products,
       (SELECT count(*) FROM l) AS logs, (SELECT count(*) FROM a) AS allocations;

-- name: datagen_proxy_range
SELECT min(id) AS first_id, max(id) AS last_id, count(*) AS n FROM v1_hub_proxies WHERE host LIKE '10.201.%%';

-- name: datagen_fast_session
-- Bulk loading only: a crash loses the last chunks, never consistency.
SET synchronous_commit = off;
