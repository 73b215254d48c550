-- The daily ledger: each protocol call is one of these functions, so one database round trip.
--
-- Lock order (keeps every path deadlock-free):
--   client row (touched first, holding nothing) -> allocation rows -> proxy rows (ascending id)
--   -> tracking rows (ascending id).
-- The allocator takes tracking and proxy rows with SKIP LOCKED, so it never waits while holding a lock;
-- only when every open row is locked does it wait, holding nothing, for the best one.
-- Every function takes the hub's clock (p_now) instead of calling now(), so roll-over is testable.

-- ---------------------------------------------------------------- helpers
CREATE OR REPLACE FUNCTION v1_hub_urlencode(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT string_agg(
        CASE WHEN ch ~ '^[A-Za-z0-9._~-]$' THEN ch
             ELSE regexp_replace(upper(encode(convert_to(ch, 'UTF8'), 'hex')), '(..)', '%\1', 'g') END, '')
    FROM regexp_split_to_table(p, '') AS ch
$$;

CREATE OR REPLACE FUNCTION v1_hub_proxy_url(p_protocol text, p_host text, p_port integer,
                                            p_username text, p_password text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_protocol || '://'
        || CASE WHEN p_username IS NULL THEN ''
                ELSE v1_hub_urlencode(p_username)
                     || CASE WHEN p_password IS NULL THEN '' ELSE ':' || v1_hub_urlencode(p_password) END
                     || '@' END
        || CASE WHEN p_host LIKE '%:%' THEN '[' || p_host || ']' ELSE p_host END
        || ':' || p_port
$$;

-- per-day proxy usage counters inside usage_stats: {"days": {"YYYY-MM-DD": {"uses": n, ...}}}
CREATE OR REPLACE FUNCTION v1_hub_bump_usage(p_stats jsonb, p_day date, p_field text, p_n integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_stats, '{}') || jsonb_build_object('days',
        coalesce(p_stats->'days', '{}') || jsonb_build_object(p_day::text,
            coalesce(p_stats #> ARRAY['days', p_day::text], '{}') || jsonb_build_object(p_field,
                coalesce((p_stats #>> ARRAY['days', p_day::text, p_field])::bigint, 0) + p_n)))
$$;

CREATE OR REPLACE FUNCTION v1_hub_fill_ratio(p_success integer, p_in_flight integer, p_target integer)
RETURNS real LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_target > 0 THEN (p_success + p_in_flight)::real / p_target ELSE 1 END
$$;

-- Registers a client on first sight and refreshes last_seen at most every 5 s, never waiting on the row.
CREATE OR REPLACE FUNCTION v1_hub_touch_client(p_ip inet, p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE v1_hub_clients SET last_seen_at = p_now, offline_alerted = false
    WHERE id = (SELECT id FROM v1_hub_clients
                WHERE client_ip = p_ip AND last_seen_at < p_now - interval '5 seconds'
                FOR UPDATE SKIP LOCKED);
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM v1_hub_clients WHERE client_ip = p_ip) THEN
        INSERT INTO v1_hub_clients (client_ip, first_seen_at, last_seen_at)
        VALUES (p_ip, p_now, p_now) ON CONFLICT (client_ip) DO NOTHING;
    END IF;
END;
$$;

-- ---------------------------------------------------------------- daily roll-over
-- Creates the day's tracking rows for every active slot in range; safe to run any number of times.
CREATE OR REPLACE FUNCTION init_daily_work_tracking(p_date date DEFAULT CURRENT_DATE) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer;
BEGIN
    INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count)
    SELECT s.id, p_date, s.daily_work_count
    FROM v1_hub_work_slots s
    WHERE s.is_active AND p_date BETWEEN s.start_date AND s.end_date
    ORDER BY s.id
    ON CONFLICT (slot_id, work_date) DO NOTHING;
    GET DIAGNOSTICS created = ROW_COUNT;
    INSERT INTO v1_hub_tracking_days (work_date, slots_created) VALUES (p_date, created)
    ON CONFLICT (work_date) DO UPDATE
        SET slots_created = v1_hub_tracking_days.slots_created + EXCLUDED.slots_created;
    RETURN created;
END;
$$;

-- Slots created or changed during the day (by the API or by plain SQL) join the initialised days at once,
-- and a changed daily_work_count is today's target at once (never below what is done or in flight).
CREATE OR REPLACE FUNCTION v1_hub_slot_tracking_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.is_active THEN
        INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count)
        SELECT NEW.id, d.work_date, NEW.daily_work_count
        FROM v1_hub_tracking_days d
        WHERE d.work_date >= CURRENT_DATE - 1 AND d.work_date BETWEEN NEW.start_date AND NEW.end_date
        ON CONFLICT (slot_id, work_date) DO NOTHING;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.daily_work_count <> OLD.daily_work_count THEN
        UPDATE v1_hub_daily_work_tracking t
        SET target_count = GREATEST(NEW.daily_work_count, t.success_count + t.in_flight_count),
            fill_ratio = v1_hub_fill_ratio(t.success_count, t.in_flight_count,
                                           GREATEST(NEW.daily_work_count, t.success_count + t.in_flight_count)),
            completed_at = CASE WHEN t.success_count >= GREATEST(NEW.daily_work_count,
                                                                 t.success_count + t.in_flight_count)
                                THEN t.completed_at END,
            updated_at = now()
        WHERE t.slot_id = NEW.id AND t.work_date >= CURRENT_DATE;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER v1_hub_work_slots_tracking AFTER INSERT OR UPDATE OF is_active, start_date, end_date,
    daily_work_count ON v1_hub_work_slots
    FOR EACH ROW EXECUTE FUNCTION v1_hub_slot_tracking_sync();

CREATE OR REPLACE FUNCTION v1_hub_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER v1_hub_work_slots_updated BEFORE UPDATE ON v1_hub_work_slots
    FOR EACH ROW EXECUTE FUNCTION v1_hub_touch_updated_at();
CREATE TRIGGER v1_hub_external_sites_updated BEFORE UPDATE ON v1_hub_external_sites
    FOR EACH ROW EXECUTE FUNCTION v1_hub_touch_updated_at();

-- ---------------------------------------------------------------- allocate
CREATE OR REPLACE FUNCTION v1_hub_allocate_work(
    p_client_ip inet, p_instance integer, p_folder integer, p_count integer,
    p_now timestamptz, p_lease_seconds integer, p_attempts_factor integer DEFAULT 3)
-- jit = off: the planner's row guesses for generate_series/unnest put this plan far above jit_above_cost,
-- and on servers built with LLVM (e.g. Debian's PostgreSQL 15) compiling it took 3-5 s per call
-- (EXPLAIN ANALYZE, see docs/performance.md); the real plan runs in under a millisecond without it.
-- plan_cache_mode = force_generic_plan: plan the statements once per connection instead of on every call
-- (re-planning the package statement cost more than running it); enable_hashjoin = off: the planner
-- guesses 1,000 rows for each run-time generate_series, and hash joins then scan the whole tracking and
-- proxy tables; nested loops over the primary keys are right for the at most 100 rows touched.
-- Measured with pgbench on 1,000 slots / 2,000 proxies: one package 8.3 -> 3.0 ms, fifty 22.4 -> 18.2 ms.
RETURNS jsonb LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off
AS $$
DECLARE
    d          date := p_now::date;   -- the session TimeZone is the hub's
    day_frac   double precision := extract(epoch FROM p_now - p_now::date::timestamptz) / 86400.0;
    lease      interval := make_interval(secs => p_lease_seconds);
    cand       bigint[];
    packages   jsonb;
    n_alloc    integer;
    reason     text;
    retry      integer;
    first_slot integer;
    first_id   bigint;
BEGIN
    PERFORM v1_hub_touch_client(p_client_ip, p_now);
    IF NOT EXISTS (SELECT 1 FROM v1_hub_tracking_days WHERE work_date = d) THEN
        PERFORM init_daily_work_tracking(d);
    END IF;

    -- 1. lock the least complete allocatable rows nobody else holds
    -- (the allocatable predicate is repeated in step 2 and, in part, in the no_work reasons below on purpose:
    -- a view would make FOR UPDATE lock the slot rows too, and a function hides it from the planner's use
    -- of the v1_hub_tracking_open index and from the re-check after a lock wait)
    SELECT array_agg(id) INTO cand FROM (
        SELECT t.id
        FROM v1_hub_daily_work_tracking t
        JOIN v1_hub_work_slots s ON s.id = t.slot_id
        WHERE t.work_date = d
          AND t.success_count + t.in_flight_count < t.target_count   -- the open-rows index
          AND t.success_count + t.in_flight_count < s.daily_work_count   -- a lowered count, at once
          AND s.is_active AND d BETWEEN s.start_date AND s.end_date
          AND t.allocated_count < coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count)
          AND (s.pace = 'asap' OR t.success_count + t.in_flight_count
                                  < ceil(LEAST(t.target_count, s.daily_work_count) * day_frac))
        ORDER BY t.fill_ratio, t.id
        LIMIT p_count
        FOR UPDATE OF t SKIP LOCKED) c;

    -- 2. all of them busy: wait (holding nothing) for the best one; the guard is re-checked after the wait
    --    (the same predicate as step 1: keep the two in step; only LIMIT and SKIP LOCKED differ)
    IF cand IS NULL THEN
        SELECT array_agg(id) INTO cand FROM (
            SELECT t.id
            FROM v1_hub_daily_work_tracking t
            JOIN v1_hub_work_slots s ON s.id = t.slot_id
            WHERE t.work_date = d
              AND t.success_count + t.in_flight_count < t.target_count   -- the open-rows index
              AND t.success_count + t.in_flight_count < s.daily_work_count   -- a lowered count, at once
              AND s.is_active AND d BETWEEN s.start_date AND s.end_date
              AND t.allocated_count < coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count)
              AND (s.pace = 'asap' OR t.success_count + t.in_flight_count
                                      < ceil(LEAST(t.target_count, s.daily_work_count) * day_frac))
            ORDER BY t.fill_ratio, t.id
            LIMIT 1
            FOR UPDATE OF t) c;
    END IF;

    -- 3. spread the packages over the locked rows (one each in order, then again) and over the
    --    usable proxies (fewest uses first, water-filled), then write everything in one statement
    IF cand IS NOT NULL THEN
        WITH cand_rows AS (
            SELECT t.id AS tracking_id, t.slot_id, o.rn, s.keyword, s.code,
                   jsonb_build_object(
                       'cart_click_enabled', s.cart_click_enabled,
                       'block_mercury', s.block_mercury,
                       'block_image_cdn', s.block_image_cdn,
                       'block_img1a_cdn', s.block_img1a_cdn,
                       'block_thumbnail_cdn', s.block_thumbnail_cdn) AS settings,
                   LEAST(LEAST(t.target_count, s.daily_work_count) - t.success_count - t.in_flight_count,
                         coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count) - t.allocated_count,
                         CASE WHEN s.pace = 'even'
                              THEN ceil(LEAST(t.target_count, s.daily_work_count) * day_frac)::integer
                                   - t.success_count - t.in_flight_count
                              ELSE p_count END,
                         p_count) AS cap
            FROM unnest(cand) WITH ORDINALITY AS o(id, rn)
            JOIN v1_hub_daily_work_tracking t ON t.id = o.id
            JOIN v1_hub_work_slots s ON s.id = t.slot_id
        ),
        units AS (
            SELECT c.*, row_number() OVER (ORDER BY g.k, c.rn) AS n
            FROM cand_rows c CROSS JOIN LATERAL generate_series(1, GREATEST(c.cap, 0)) AS g(k)
        ),
        px AS MATERIALIZED (
            SELECT p.id, p.use_count, p.max_uses, p.protocol, p.host, p.port, p.username, p.password
            FROM v1_hub_proxies p
            WHERE p.status = 'active' AND p.use_count < p.max_uses
              AND (p.cooldown_until IS NULL OR p.cooldown_until <= p_now)
            ORDER BY p.use_count, p.id
            LIMIT p_count
            FOR UPDATE SKIP LOCKED
        ),
        proxy_units AS (
            SELECT px.id AS proxy_id, row_number() OVER (ORDER BY g.u, px.id) AS n
            FROM px CROSS JOIN LATERAL generate_series(px.use_count,
                                                       LEAST(px.max_uses, px.use_count + p_count) - 1) AS g(u)
        ),
        pkg AS MATERIALIZED (
            SELECT u.n, u.tracking_id, u.slot_id, u.keyword, u.code, u.settings, pu.proxy_id,
                   gen_random_uuid() AS allocation_key
            FROM units u JOIN proxy_units pu ON pu.n = u.n
            WHERE u.n <= p_count
        ),
        ins AS (
            INSERT INTO v1_hub_work_allocations
                (allocation_key, slot_id, tracking_id, work_date, client_ip, instance_number,
                 user_folder_number, proxy_id, settings, allocated_at, expires_at)
            SELECT allocation_key, slot_id, tracking_id, d, p_client_ip, p_instance, p_folder, proxy_id,
                   settings, p_now, p_now + lease
            FROM pkg ORDER BY pkg.n
            RETURNING id, allocation_key
        ),
        upd_tracking AS (
            UPDATE v1_hub_daily_work_tracking t
            SET allocated_count = t.allocated_count + a.k,
                in_flight_count = t.in_flight_count + a.k,
                fill_ratio = v1_hub_fill_ratio(t.success_count, t.in_flight_count + a.k, t.target_count),
                first_allocated_at = coalesce(t.first_allocated_at, p_now),
                last_allocated_at = p_now,
                updated_at = p_now
            FROM (SELECT tracking_id, count(*)::integer AS k FROM pkg GROUP BY tracking_id) a
            WHERE t.id = a.tracking_id
        ),
        upd_proxy AS (
            UPDATE v1_hub_proxies p
            SET use_count = p.use_count + a.k,
                total_uses = p.total_uses + a.k,
                last_used_at = p_now,
                usage_stats = v1_hub_bump_usage(p.usage_stats, d, 'uses', a.k),
                status = CASE WHEN p.use_count + a.k >= p.max_uses THEN 'exhausted' ELSE p.status END,
                status_reason = CASE WHEN p.use_count + a.k >= p.max_uses THEN 'use budget spent'
                                     ELSE p.status_reason END,
                status_changed_at = CASE WHEN p.use_count + a.k >= p.max_uses THEN p_now
                                         ELSE p.status_changed_at END
            FROM (SELECT proxy_id, count(*)::integer AS k FROM pkg GROUP BY proxy_id) a
            WHERE p.id = a.proxy_id
        )
        SELECT jsonb_agg(jsonb_build_object(
                   'allocation_key', pkg.allocation_key,
                   'expires_at', p_now + lease,
                   'work_date', d,
                   'slot', jsonb_build_object('id', pkg.slot_id, 'keyword', pkg.keyword, 'code', pkg.code),
                   'settings', pkg.settings,
                   'proxy', jsonb_build_object(
                       'id', px.id, 'protocol', px.protocol, 'host', px.host, 'port', px.port,
                       'username', px.username, 'password', px.password,
                       'url', v1_hub_proxy_url(px.protocol, px.host, px.port, px.username, px.password)))
                   ORDER BY pkg.n),
               count(*), min(pkg.slot_id), min(ins.id)
        INTO packages, n_alloc, first_slot, first_id
        FROM pkg JOIN px ON px.id = pkg.proxy_id JOIN ins ON ins.allocation_key = pkg.allocation_key;
    END IF;

    IF coalesce(n_alloc, 0) > 0 THEN
        INSERT INTO v1_hub_client_activity_logs
            (reported_at, client_ip, instance_number, user_folder_number, action, status, slot_id,
             allocation_id, detail)
        VALUES (p_now, p_client_ip, p_instance, p_folder, 'allocate', 'allocated',
                CASE WHEN n_alloc = 1 THEN first_slot END, CASE WHEN n_alloc = 1 THEN first_id END,
                jsonb_build_object('requested', p_count, 'allocated', n_alloc));
        RETURN jsonb_build_object('status', 'allocated', 'allocations', packages);
    END IF;

    -- nothing handed out: say why
    IF cand IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM v1_hub_proxies WHERE status = 'active' AND use_count < max_uses
                   AND (cooldown_until IS NULL OR cooldown_until <= p_now)) THEN
            -- usable proxies exist but concurrent allocations hold them all this instant
            reason := 'no_proxy_available';
            retry := 1;
        ELSE
            reason := 'no_proxy_available';
            retry := 15;
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM v1_hub_work_slots s
                      WHERE s.is_active AND d BETWEEN s.start_date AND s.end_date) THEN
        reason := 'no_active_slots';
        retry := 60;
    ELSIF EXISTS (SELECT 1 FROM v1_hub_daily_work_tracking t JOIN v1_hub_work_slots s ON s.id = t.slot_id
                  WHERE t.work_date = d AND s.is_active AND d BETWEEN s.start_date AND s.end_date
                    AND t.success_count < t.target_count
                    AND t.allocated_count >= coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count))
          AND NOT EXISTS (SELECT 1 FROM v1_hub_daily_work_tracking t JOIN v1_hub_work_slots s ON s.id = t.slot_id
                  WHERE t.work_date = d AND s.is_active AND d BETWEEN s.start_date AND s.end_date
                    AND t.success_count + t.in_flight_count < t.target_count
                    AND t.allocated_count < coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count)) THEN
        reason := 'attempt_limit_reached';
        retry := 300;
    ELSE
        reason := 'daily_quota_reached';
        retry := 30;
    END IF;
    INSERT INTO v1_hub_client_activity_logs
        (reported_at, client_ip, instance_number, user_folder_number, action, status, detail)
    VALUES (p_now, p_client_ip, p_instance, p_folder, 'allocate', 'no_work',
            jsonb_build_object('requested', p_count, 'reason', reason));
    RETURN jsonb_build_object('status', 'no_work', 'reason', reason, 'retry_after_seconds', retry,
                              'allocations', '[]'::jsonb);
END;
$$;

-- ---------------------------------------------------------------- submit
-- Returns {"status": accepted|late|duplicate, "result_id", "counted"} or {"error": code}.
-- A result after expiry is stored ("late"); it moves its lease from expired to its outcome only while
-- that keeps success + in_flight <= target, so the counts always equal the counted results.
CREATE OR REPLACE FUNCTION v1_hub_submit_result(
    p_key uuid, p_status text, p_execution_ms integer, p_rank integer, p_page integer,
    p_block_type text, p_error text, p_applied jsonb, p_products jsonb, p_result_data jsonb,
    p_client_ip inet, p_now timestamptz,
    p_cooldown_after integer DEFAULT 3, p_cooldown_seconds integer DEFAULT 600)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a         v1_hub_work_allocations%ROWTYPE;
    t         v1_hub_daily_work_tracking%ROWTYPE;
    was_live  boolean;
    is_late   boolean;
    is_counted boolean;
    rid       bigint;
    applied   jsonb;
    completes boolean := false;
BEGIN
    -- before any ledger lock: registering a new client may wait on another transaction's insert
    IF p_client_ip IS NOT NULL THEN
        PERFORM v1_hub_touch_client(p_client_ip, p_now);
    END IF;
    SELECT * INTO a FROM v1_hub_work_allocations WHERE allocation_key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'unknown_allocation_key');
    END IF;
    IF a.result_id IS NOT NULL THEN
        INSERT INTO v1_hub_client_activity_logs
            (reported_at, client_ip, instance_number, user_folder_number, action, status, slot_id,
             allocation_id, detail)
        VALUES (p_now, coalesce(p_client_ip, a.client_ip), a.instance_number, a.user_folder_number, 'submit',
                'duplicate', a.slot_id, a.id, jsonb_build_object('result_id', a.result_id));
        RETURN jsonb_build_object('status', 'duplicate', 'result_id', a.result_id, 'counted', a.counted,
                                  'late', a.late);
    END IF;
    IF a.status = 'released' THEN
        RETURN jsonb_build_object('error', 'allocation_released');
    END IF;

    was_live := a.status = 'allocated';
    is_late := a.status = 'expired' OR a.expires_at <= p_now;

    -- proxy before tracking (lock order)
    IF a.proxy_id IS NOT NULL THEN
        UPDATE v1_hub_proxies p
        SET success_count = p.success_count + (p_status = 'success')::integer,
            fail_count = p.fail_count + (p_status = 'failed')::integer,
            block_count = p.block_count + (p_status = 'blocked')::integer,
            consecutive_blocks = CASE p_status WHEN 'blocked' THEN p.consecutive_blocks + 1
                                               WHEN 'success' THEN 0 ELSE p.consecutive_blocks END,
            usage_stats = v1_hub_bump_usage(p.usage_stats, p_now::date, p_status, 1),
            status = CASE WHEN p_status = 'blocked' AND p.consecutive_blocks + 1 >= p_cooldown_after
                               AND p.status IN ('active', 'exhausted') THEN 'cooldown' ELSE p.status END,
            status_reason = CASE WHEN p_status = 'blocked' AND p.consecutive_blocks + 1 >= p_cooldown_after
                                      AND p.status IN ('active', 'exhausted')
                                 THEN (p.consecutive_blocks + 1) || ' consecutive blocked results'
                                 ELSE p.status_reason END,
            cooldown_until = CASE WHEN p_status = 'blocked' AND p.consecutive_blocks + 1 >= p_cooldown_after
                                       AND p.status IN ('active', 'exhausted')
                                  THEN p_now + make_interval(secs => p_cooldown_seconds)
                                  ELSE p.cooldown_until END,
            status_changed_at = CASE WHEN p_status = 'blocked' AND p.consecutive_blocks + 1 >= p_cooldown_after
                                          AND p.status IN ('active', 'exhausted')
                                     THEN p_now ELSE p.status_changed_at END
        WHERE p.id = a.proxy_id;
    END IF;

    SELECT * INTO t FROM v1_hub_daily_work_tracking WHERE id = a.tracking_id FOR UPDATE;
    IF NOT is_late THEN
        is_counted := true;
    ELSIF p_status = 'success' THEN
        -- after lapsing this lease (if the sweeper has not yet), is there room below target?
        is_counted := t.success_count + t.in_flight_count - was_live::integer < t.target_count;
    ELSE
        is_counted := true;
    END IF;

    UPDATE v1_hub_daily_work_tracking
    SET in_flight_count = in_flight_count - was_live::integer,
        expired_count = expired_count + (is_late AND was_live)::integer - (is_late AND is_counted)::integer,
        success_count = success_count + (is_counted AND p_status = 'success')::integer,
        failed_count = failed_count + (is_counted AND p_status = 'failed')::integer,
        blocked_count = blocked_count + (is_counted AND p_status = 'blocked')::integer,
        late_count = late_count + is_late::integer,
        fill_ratio = v1_hub_fill_ratio(success_count + (is_counted AND p_status = 'success')::integer,
                                       in_flight_count - was_live::integer, target_count),
        first_result_at = coalesce(first_result_at, p_now),
        last_result_at = p_now,
        completed_at = CASE WHEN completed_at IS NULL AND is_counted AND p_status = 'success'
                                 AND success_count + 1 >= target_count THEN p_now ELSE completed_at END,
        updated_at = p_now
    WHERE id = t.id
    RETURNING completed_at = p_now AND t.completed_at IS NULL INTO completes;

    applied := a.settings || coalesce(p_applied, '{}'::jsonb);
    INSERT INTO v1_hub_work_results
        (created_at, allocation_id, allocation_key, slot_id, work_date, client_ip, instance_number,
         user_folder_number, proxy_id, status, is_blocked, block_type, error_message, execution_time_ms,
         rank, page, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
         applied_block_img1a_cdn, applied_block_thumbnail_cdn, late, counted, result_data)
    VALUES
        (p_now, a.id, a.allocation_key, a.slot_id, a.work_date, coalesce(p_client_ip, a.client_ip),
         a.instance_number, a.user_folder_number, a.proxy_id, p_status, p_status = 'blocked', p_block_type,
         p_error, p_execution_ms, p_rank, p_page,
         (applied->>'cart_click_enabled')::boolean, (applied->>'block_mercury')::boolean,
         (applied->>'block_image_cdn')::boolean, (applied->>'block_img1a_cdn')::boolean,
         (applied->>'block_thumbnail_cdn')::boolean, is_late, is_counted, coalesce(p_result_data, '{}'))
    RETURNING id INTO rid;

    IF p_products IS NOT NULL AND jsonb_array_length(p_products) > 0 THEN
        INSERT INTO v1_hub_product_results (created_at, result_id, slot_id, work_date, code, name, price,
                                            rank, page, extra)
        SELECT p_now, rid, a.slot_id, a.work_date, x->>'code', x->>'name', (x->>'price')::numeric,
               (x->>'rank')::integer, (x->>'page')::integer,
               coalesce(x->'extra', '{}'::jsonb) || (x - 'code' - 'name' - 'price' - 'rank' - 'page' - 'extra')
        FROM jsonb_array_elements(p_products) AS x;
    END IF;

    UPDATE v1_hub_work_allocations
    SET status = 'submitted', submitted_at = p_now, result_id = rid, result_status = p_status,
        counted = is_counted, late = is_late
    WHERE id = a.id;

    INSERT INTO v1_hub_client_activity_logs
        (reported_at, client_ip, instance_number, user_folder_number, action, status, execution_time_ms,
         slot_id, allocation_id, detail)
    VALUES (p_now, coalesce(p_client_ip, a.client_ip), a.instance_number, a.user_folder_number, 'submit',
            p_status, p_execution_ms, a.slot_id, a.id,
            jsonb_build_object('result_id', rid, 'late', is_late, 'counted', is_counted));

    -- the day is done: queue the site's webhook (transactional outbox)
    IF completes THEN
        INSERT INTO v1_hub_webhook_deliveries (site_id, event, payload, dedupe_key)
        SELECT site.id, 'slot.completed',
               jsonb_build_object('event', 'slot.completed', 'slot_id', s.id, 'external_ref', s.external_ref,
                                  'work_date', a.work_date, 'target_count', t.target_count,
                                  'success_count', t.success_count + 1, 'completed_at', p_now),
               'slot.completed:' || s.id || ':' || a.work_date
        FROM v1_hub_work_slots s JOIN v1_hub_external_sites site ON site.id = s.external_site_id
        WHERE s.id = a.slot_id AND site.webhook_url IS NOT NULL AND site.is_active
        ON CONFLICT (dedupe_key) DO NOTHING;
    END IF;

    RETURN jsonb_build_object('status', CASE WHEN is_late THEN 'late' ELSE 'accepted' END,
                              'result_id', rid, 'counted', is_counted);
END;
$$;

-- Up to 100 results in one transaction with per-item outcomes; locks in the global order first.
CREATE OR REPLACE FUNCTION v1_hub_submit_results(
    p_items jsonb, p_client_ip inet, p_now timestamptz,
    p_cooldown_after integer DEFAULT 3, p_cooldown_seconds integer DEFAULT 600)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    keys uuid[];
    outcomes jsonb := '[]';
    item jsonb;
BEGIN
    IF p_client_ip IS NOT NULL THEN   -- first, holding nothing (the per-item touches are then no-ops)
        PERFORM v1_hub_touch_client(p_client_ip, p_now);
    END IF;
    SELECT array_agg((x->>'allocation_key')::uuid) INTO keys FROM jsonb_array_elements(p_items) AS x;
    PERFORM 1 FROM v1_hub_work_allocations WHERE allocation_key = ANY (keys) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM v1_hub_proxies
    WHERE id IN (SELECT proxy_id FROM v1_hub_work_allocations WHERE allocation_key = ANY (keys))
    ORDER BY id FOR UPDATE;
    PERFORM 1 FROM v1_hub_daily_work_tracking
    WHERE id IN (SELECT tracking_id FROM v1_hub_work_allocations WHERE allocation_key = ANY (keys))
    ORDER BY id FOR UPDATE;
    FOR item IN SELECT x FROM jsonb_array_elements(p_items) AS x LOOP
        outcomes := outcomes || jsonb_build_array(
            jsonb_build_object('allocation_key', item->>'allocation_key') ||
            v1_hub_submit_result(
                (item->>'allocation_key')::uuid, item->>'status', (item->>'execution_time_ms')::integer,
                (item->>'rank')::integer, (item->>'page')::integer, item->>'block_type', item->>'error_message',
                item->'applied_settings', item->'products', item->'result_data', p_client_ip, p_now,
                p_cooldown_after, p_cooldown_seconds));
    END LOOP;
    RETURN outcomes;
END;
$$;

-- ---------------------------------------------------------------- extend, release, expire
CREATE OR REPLACE FUNCTION v1_hub_extend_lease(p_key uuid, p_seconds integer, p_now timestamptz,
                                               p_max_lifetime_seconds integer, p_client_ip inet DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a       v1_hub_work_allocations%ROWTYPE;
    new_exp timestamptz;
BEGIN
    SELECT * INTO a FROM v1_hub_work_allocations WHERE allocation_key = p_key FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('error', 'unknown_allocation_key'); END IF;
    IF a.status = 'released' THEN RETURN jsonb_build_object('error', 'allocation_released'); END IF;
    IF a.status = 'submitted' THEN RETURN jsonb_build_object('error', 'allocation_submitted'); END IF;
    IF a.status = 'expired' OR a.expires_at <= p_now THEN
        RETURN jsonb_build_object('error', 'allocation_expired');
    END IF;
    new_exp := LEAST(p_now + make_interval(secs => p_seconds),
                     a.allocated_at + make_interval(secs => p_max_lifetime_seconds));
    IF new_exp > a.expires_at THEN
        UPDATE v1_hub_work_allocations SET expires_at = new_exp, extended_count = extended_count + 1
        WHERE id = a.id;
    ELSE
        new_exp := a.expires_at;
    END IF;
    INSERT INTO v1_hub_client_activity_logs
        (reported_at, client_ip, instance_number, user_folder_number, action, status, slot_id, allocation_id,
         detail)
    VALUES (p_now, coalesce(p_client_ip, a.client_ip), a.instance_number, a.user_folder_number, 'extend', 'ok',
            a.slot_id, a.id, jsonb_build_object('expires_at', new_exp));
    RETURN jsonb_build_object('allocation_key', a.allocation_key, 'expires_at', new_exp,
                              'capped', new_exp < p_now + make_interval(secs => p_seconds));
END;
$$;

CREATE OR REPLACE FUNCTION v1_hub_release_lease(p_key uuid, p_reason text, p_now timestamptz,
                                                p_client_ip inet DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a v1_hub_work_allocations%ROWTYPE;
BEGIN
    SELECT * INTO a FROM v1_hub_work_allocations WHERE allocation_key = p_key FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('error', 'unknown_allocation_key'); END IF;
    IF a.status = 'released' THEN    -- releasing twice is harmless
        RETURN jsonb_build_object('allocation_key', a.allocation_key, 'status', 'released',
                                  'released_at', a.released_at);
    END IF;
    IF a.status = 'submitted' THEN RETURN jsonb_build_object('error', 'allocation_submitted'); END IF;
    IF a.status = 'expired' THEN RETURN jsonb_build_object('error', 'allocation_expired'); END IF;

    UPDATE v1_hub_work_allocations SET status = 'released', released_at = p_now, release_reason = p_reason
    WHERE id = a.id;
    UPDATE v1_hub_daily_work_tracking
    SET in_flight_count = in_flight_count - 1, released_count = released_count + 1,
        fill_ratio = v1_hub_fill_ratio(success_count, in_flight_count - 1, target_count), updated_at = p_now
    WHERE id = a.tracking_id;
    INSERT INTO v1_hub_client_activity_logs
        (reported_at, client_ip, instance_number, user_folder_number, action, status, slot_id, allocation_id,
         detail)
    VALUES (p_now, coalesce(p_client_ip, a.client_ip), a.instance_number, a.user_folder_number, 'release', 'ok',
            a.slot_id, a.id, jsonb_build_object('reason', p_reason));
    RETURN jsonb_build_object('allocation_key', a.allocation_key, 'status', 'released', 'released_at', p_now);
END;
$$;

-- Lapses leases past their expiry and returns their quota; returns how many. Never waits on a lease
-- someone is submitting (SKIP LOCKED); tracking rows are locked in id order.
CREATE OR REPLACE FUNCTION v1_hub_expire_leases(p_now timestamptz, p_batch integer DEFAULT 5000)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    ids      bigint[];
    tracking bigint[];
BEGIN
    WITH due AS (
        SELECT id FROM v1_hub_work_allocations
        WHERE status = 'allocated' AND expires_at <= p_now
        ORDER BY expires_at
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED
    ), upd AS (
        UPDATE v1_hub_work_allocations a SET status = 'expired'
        FROM due WHERE a.id = due.id
        RETURNING a.id, a.tracking_id
    )
    SELECT array_agg(id), array_agg(tracking_id) INTO ids, tracking FROM upd;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM v1_hub_daily_work_tracking WHERE id = ANY (tracking) ORDER BY id FOR UPDATE;
    UPDATE v1_hub_daily_work_tracking t
    SET in_flight_count = t.in_flight_count - e.k,
        expired_count = t.expired_count + e.k,
        fill_ratio = v1_hub_fill_ratio(t.success_count, t.in_flight_count - e.k, t.target_count),
        updated_at = p_now
    FROM (SELECT x AS tracking_id, count(*)::integer AS k FROM unnest(tracking) AS x GROUP BY x) e
    WHERE t.id = e.tracking_id;
    RETURN cardinality(ids);
END;
$$;
