-- Allocation speed (issue 10): fewer index entries written per ledger update, and a leaner allocator.
--
-- * The open-rows index is bounded by fill_ratio alone. A successful submit leaves fill_ratio as it was
--   (success + 1, in flight - 1), so no indexed column of the tracking row changes and PostgreSQL can
--   update it in place (HOT) instead of adding an entry to each of its four indexes; the old predicate
--   named success_count and in_flight_count, which made every update a non-HOT one.
--   fill_ratio < 1 holds exactly when success + in_flight < target: v1_hub_fill_ratio keeps an open row
--   strictly below 1 (targets are at most 1,000,000, far inside real's precision, and it clamps anyway).
-- * fillfactor 80 on the two hot tables leaves room on each page for those in-place updates.
-- * Indexes nothing needs are dropped (v1_hub_proxies_status, two on v1_hub_work_allocations): every
--   allocation and submit paid for them; the queries they could serve read small tables or use the
--   primary key.
-- * Helpers the planner could not inline (a STABLE cast inside an IMMUTABLE function) now inline or
--   take a fast path.

CREATE OR REPLACE FUNCTION v1_hub_fill_ratio(p_success integer, p_in_flight integer, p_target integer)
RETURNS real LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_target <= 0 THEN 1
                WHEN p_success + p_in_flight >= p_target THEN (p_success + p_in_flight)::real / p_target
                ELSE LEAST((p_success + p_in_flight)::real / p_target, 0.99999994::real) END
$$;

-- only rows whose stored ratio disagrees (none unless a target exceeded real's precision)
UPDATE v1_hub_daily_work_tracking
SET fill_ratio = v1_hub_fill_ratio(success_count, in_flight_count, target_count)
WHERE fill_ratio IS DISTINCT FROM v1_hub_fill_ratio(success_count, in_flight_count, target_count);

DROP INDEX IF EXISTS v1_hub_tracking_open;
CREATE INDEX v1_hub_tracking_open ON v1_hub_daily_work_tracking (work_date, fill_ratio, id)
    WHERE fill_ratio < 1;
DROP INDEX IF EXISTS v1_hub_proxies_status;
-- no query reads allocations by slot, and the daily archiving walks them in id order (ids follow time),
-- while every allocation and every submit wrote both indexes
DROP INDEX IF EXISTS v1_hub_allocations_slot_date;
DROP INDEX IF EXISTS v1_hub_allocations_allocated_at;
ALTER TABLE v1_hub_daily_work_tracking SET (fillfactor = 80);
ALTER TABLE v1_hub_proxies SET (fillfactor = 80);

-- plain characters (the usual user name and password) skip the per-character encoding
CREATE OR REPLACE FUNCTION v1_hub_urlencode(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN p ~ '^[A-Za-z0-9._~-]*$' THEN p ELSE (
        SELECT string_agg(
            CASE WHEN ch ~ '^[A-Za-z0-9._~-]$' THEN ch
                 ELSE regexp_replace(upper(encode(convert_to(ch, 'UTF8'), 'hex')), '(..)', '%\1', 'g') END, '')
        FROM regexp_split_to_table(p, '') AS ch) END
$$;

-- p_port::text instead of "|| p_port" (anytextcat is STABLE, which kept the planner from inlining)
CREATE OR REPLACE FUNCTION v1_hub_proxy_url(p_protocol text, p_host text, p_port integer,
                                            p_username text, p_password text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_protocol || '://'
        || CASE WHEN p_username IS NULL THEN ''
                ELSE v1_hub_urlencode(p_username)
                     || CASE WHEN p_password IS NULL THEN '' ELSE ':' || v1_hub_urlencode(p_password) END
                     || '@' END
        || CASE WHEN p_host LIKE '%:%' THEN '[' || p_host || ']' ELSE p_host END
        || ':' || p_port::text
$$;

-- STABLE, as it truly is (date -> text follows DateStyle), so it inlines into the UPDATEs that use it
CREATE OR REPLACE FUNCTION v1_hub_bump_usage(p_stats jsonb, p_day date, p_field text, p_n integer)
RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_stats, '{}') || jsonb_build_object('days',
        coalesce(p_stats->'days', '{}') || jsonb_build_object(p_day::text,
            coalesce(p_stats #> ARRAY['days', p_day::text], '{}') || jsonb_build_object(p_field,
                coalesce((p_stats #>> ARRAY['days', p_day::text, p_field])::bigint, 0) + p_n)))
$$;

-- ---------------------------------------------------------------- allocate
-- the reply is built as json now (the hub sends its text as it is): a new return type needs a DROP
DROP FUNCTION v1_hub_allocate_work(inet, integer, integer, integer, timestamptz, integer, integer);
CREATE FUNCTION v1_hub_allocate_work(
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
-- Migration 0006: the open-rows scan bounds fill_ratio < 1, and the packages are the first p_count of
-- each spread (top-N) instead of numbering every possible unit (2,500 rows for fifty packages).
-- enable_seqscan/enable_bitmapscan = off: the generic plan cannot see the LIMIT, and on some statistics it
-- preferred sorting the whole day's tracking rows (and seq-scanning them in the UPDATE) to walking the
-- open-rows index; every statement here reads at most p_count rows through an index.
RETURNS json LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan SET enable_hashjoin = off
    SET enable_seqscan = off SET enable_bitmapscan = off SET enable_mergejoin = off
AS $$
DECLARE
    d          date := p_now::date;   -- the session TimeZone is the hub's
    day_frac   double precision := extract(epoch FROM p_now - p_now::date::timestamptz) / 86400.0;
    lease      interval := make_interval(secs => p_lease_seconds);
    cand       bigint[];
    packages   json;
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
        WHERE t.work_date = d
          AND t.fill_ratio < 1   -- the open-rows index
          AND t.success_count + t.in_flight_count < t.target_count
          AND (SELECT s.is_active AND d BETWEEN s.start_date AND s.end_date
                      AND t.success_count + t.in_flight_count < s.daily_work_count   -- a lowered count, at once
                      AND t.allocated_count < coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count)
                      AND (s.pace = 'asap' OR t.success_count + t.in_flight_count
                                              < ceil(LEAST(t.target_count, s.daily_work_count) * day_frac))
               FROM v1_hub_work_slots s WHERE s.id = t.slot_id)
        ORDER BY t.fill_ratio, t.id
        LIMIT p_count
        FOR UPDATE OF t SKIP LOCKED) c;

    -- 2. all of them busy: wait (holding nothing) for the best one; the guard is re-checked after the wait
    --    (the same predicate as step 1: keep the two in step; only LIMIT and SKIP LOCKED differ)
    IF cand IS NULL THEN
        SELECT array_agg(id) INTO cand FROM (
            SELECT t.id
            FROM v1_hub_daily_work_tracking t
            WHERE t.work_date = d
              AND t.fill_ratio < 1   -- the open-rows index
              AND t.success_count + t.in_flight_count < t.target_count
              AND (SELECT s.is_active AND d BETWEEN s.start_date AND s.end_date
                          AND t.success_count + t.in_flight_count < s.daily_work_count   -- a lowered count, at once
                          AND t.allocated_count < coalesce(s.max_daily_attempts, p_attempts_factor * t.target_count)
                          AND (s.pace = 'asap' OR t.success_count + t.in_flight_count
                                                  < ceil(LEAST(t.target_count, s.daily_work_count) * day_frac))
                   FROM v1_hub_work_slots s WHERE s.id = t.slot_id)
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
        -- every locked row can take at least one package, so no more than p_count - m + 1 rounds are needed
        units AS (
            SELECT f.*, row_number() OVER (ORDER BY f.k, f.rn) AS n
            FROM (SELECT c.*, g.k
                  FROM cand_rows c
                  CROSS JOIN LATERAL generate_series(1, LEAST(c.cap, p_count - cardinality(cand) + 1)) AS g(k)
                  ORDER BY g.k, c.rn
                  LIMIT p_count) f
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
        proxy_units AS (   -- narrow rows through the top-N sort; the endpoint columns are joined after it
            SELECT f.proxy_id, row_number() OVER (ORDER BY f.u, f.proxy_id) AS n
            FROM (SELECT px.id AS proxy_id, g.u
                  FROM px CROSS JOIN LATERAL generate_series(px.use_count,
                                                             LEAST(px.max_uses, px.use_count + p_count) - 1) AS g(u)
                  ORDER BY g.u, px.id
                  LIMIT p_count) f
        ),
        pkg AS MATERIALIZED (
            SELECT u.n, u.tracking_id, u.slot_id, u.keyword, u.code, u.settings, pu.proxy_id, px.protocol,
                   px.host, px.port, px.username, px.password, gen_random_uuid() AS allocation_key
            FROM units u JOIN proxy_units pu ON pu.n = u.n JOIN px ON px.id = pu.proxy_id
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
        SELECT json_agg(json_build_object(
                   'allocation_key', pkg.allocation_key,
                   'expires_at', p_now + lease,
                   'work_date', d,
                   'slot', json_build_object('id', pkg.slot_id, 'keyword', pkg.keyword, 'code', pkg.code),
                   'settings', pkg.settings,
                   'proxy', json_build_object(
                       'id', pkg.proxy_id, 'protocol', pkg.protocol, 'host', pkg.host, 'port', pkg.port,
                       'username', pkg.username, 'password', pkg.password,
                       'url', v1_hub_proxy_url(pkg.protocol, pkg.host, pkg.port, pkg.username, pkg.password)))
                   ORDER BY pkg.n),
               count(*), min(pkg.slot_id), (SELECT min(id) FROM ins)
        INTO packages, n_alloc, first_slot, first_id
        FROM pkg;   -- no joins back to px and ins: pkg carries what the reply needs
    END IF;

    IF coalesce(n_alloc, 0) > 0 THEN
        INSERT INTO v1_hub_client_activity_logs
            (reported_at, client_ip, instance_number, user_folder_number, action, status, slot_id,
             allocation_id, detail)
        VALUES (p_now, p_client_ip, p_instance, p_folder, 'allocate', 'allocated',
                CASE WHEN n_alloc = 1 THEN first_slot END, CASE WHEN n_alloc = 1 THEN first_id END,
                jsonb_build_object('requested', p_count, 'allocated', n_alloc));
        RETURN json_build_object('status', 'allocated', 'allocations', packages);
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
    RETURN json_build_object('status', 'no_work', 'reason', reason, 'retry_after_seconds', retry,
                             'allocations', '[]'::json);
END;
$$;
