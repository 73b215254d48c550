-- Analysis speed: a rollup of the operations guide's query 3.4 (results per settings combination) that
-- reproduces the guide's numbers exactly, so the settings analysis reads a few hundred rollup rows plus
-- the last minutes of raw results instead of every result of the window.
--
-- The guide filters on created_at (not work_date), groups the five applied_* flags as they are (NULL is
-- a group of its own) and averages execution_time_ms over the rows that have one. The weekly
-- v1_hub_stats_daily_settings rollup cannot give that back (work_date days, NULL folded into false, no
-- count of timed rows, blocked counted by status), hence these tables:
--
-- * v1_hub_stats_settings_spans: time ranges [span_start, span_end) of created_at that are rolled up.
--   A range is rolled up only once it has closed: the hub stamps created_at with its clock when it
--   inserts a result (v1_hub_submit_result(s)), so once the hub clock is p_lag past a range's end no
--   more rows for it arrive. Spans are whole local days, or, for the current day, steps of p_step from
--   local midnight; when a day closes, its steps are merged into one day span (sums of integers, exact).
-- * v1_hub_stats_settings_by_span: per span and combination the sums the guide's aggregates are made
--   of: total (COUNT(*)), timed and sum_execution_ms (AVG), success_count (the success rate's
--   numerator), blocked_count (is_blocked). A span without results has no combination rows.
--
-- A reader follows the chain of spans from the window's start (longest span first) and reads raw rows
-- from the chain's end on. Any chain is exact, since every span holds exactly its range; spans merged
-- into a day span are deleted an hour later, long after any reader that chose them has finished.
-- Limitation (like every rollup here): rows inserted later with a created_at inside an already rolled-up
-- range (hand-written back-dated rows) are not seen; v1_hub_settings_rollup_reset() starts over.

CREATE TABLE IF NOT EXISTS v1_hub_stats_settings_spans (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    span_start  timestamptz NOT NULL,
    span_end    timestamptz NOT NULL,
    results     bigint NOT NULL DEFAULT 0,
    rolled_at   timestamptz NOT NULL,
    CONSTRAINT v1_hub_stats_settings_spans_range CHECK (span_end > span_start),
    CONSTRAINT v1_hub_stats_settings_spans_key UNIQUE (span_start, span_end)
);

CREATE TABLE IF NOT EXISTS v1_hub_stats_settings_by_span (
    span_id                      bigint NOT NULL REFERENCES v1_hub_stats_settings_spans (id) ON DELETE CASCADE,
    applied_cart_click           boolean,
    applied_block_mercury        boolean,
    applied_block_image_cdn      boolean,
    applied_block_img1a_cdn      boolean,
    applied_block_thumbnail_cdn  boolean,
    total                        bigint NOT NULL,
    timed                        bigint NOT NULL,
    sum_execution_ms             bigint NOT NULL,
    success_count                bigint NOT NULL,
    blocked_count                bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS v1_hub_stats_settings_by_span_key ON v1_hub_stats_settings_by_span
    (span_id, applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
     applied_block_thumbnail_cdn) NULLS NOT DISTINCT;

-- The chain of rolled-up spans from p_from (each step the longest span starting where the last ended):
-- their ids, and where the chain ends (p_from when there is none), i.e. where raw rows take over.
CREATE OR REPLACE FUNCTION v1_hub_settings_chain(p_from timestamptz, OUT span_ids bigint[],
                                                 OUT chain_end timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s record;
BEGIN
    span_ids := '{}';
    chain_end := p_from;
    LOOP
        SELECT id, span_end INTO s FROM v1_hub_stats_settings_spans
        WHERE span_start = chain_end ORDER BY span_end DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        span_ids := span_ids || s.id;
        chain_end := s.span_end;
    END LOOP;
END;
$$;

-- Rolls up one range of live and archived result rows as a new span; returns its id.
CREATE OR REPLACE FUNCTION v1_hub_settings_roll_span(p_start timestamptz, p_end timestamptz, p_now timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    sid bigint;
BEGIN
    INSERT INTO v1_hub_stats_settings_spans (span_start, span_end, rolled_at)
    VALUES (p_start, p_end, p_now) RETURNING id INTO sid;
    INSERT INTO v1_hub_stats_settings_by_span
        (span_id, applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
         applied_block_thumbnail_cdn, total, timed, sum_execution_ms, success_count, blocked_count)
    SELECT sid, applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
           applied_block_thumbnail_cdn, count(*), count(execution_time_ms), coalesce(sum(execution_time_ms), 0),
           count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE is_blocked)
    FROM (SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
                 applied_block_thumbnail_cdn, execution_time_ms, status, is_blocked
          FROM v1_hub_work_results WHERE created_at >= p_start AND created_at < p_end
          UNION ALL
          SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
                 applied_block_thumbnail_cdn, execution_time_ms, status, is_blocked
          FROM v1_hub_work_results_archive WHERE created_at >= p_start AND created_at < p_end) r
    GROUP BY 2, 3, 4, 5, 6;
    UPDATE v1_hub_stats_settings_spans
    SET results = (SELECT coalesce(sum(total), 0) FROM v1_hub_stats_settings_by_span WHERE span_id = sid)
    WHERE id = sid;
    RETURN sid;
END;
$$;

-- Extends the chain from p_from (a local midnight of this session's TimeZone) over every range that has
-- closed by p_now - p_lag: whole days, then steps of p_step of the current day. Returns the chain (span
-- ids) and its end, from where the caller reads raw rows. Cheap, and lock-free, when there is nothing to
-- roll up (less than one step since the chain's end); rollers are serialized by an advisory lock.
CREATE OR REPLACE FUNCTION v1_hub_settings_rollup(p_from timestamptz, p_now timestamptz,
                                                  p_step interval DEFAULT interval '15 minutes',
                                                  p_lag interval DEFAULT interval '5 minutes',
                                                  OUT span_ids bigint[], OUT chain_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    lim       timestamptz := p_now - p_lag;
    next_day  timestamptz;
    stop      timestamptz;
    day_start timestamptz;
    day_ids   bigint[];
    merged    bigint;
    here      timestamptz;
    more      bigint[];
BEGIN
    SELECT c.span_ids, c.chain_end INTO span_ids, chain_end FROM v1_hub_settings_chain(p_from) c;
    IF lim - chain_end < p_step THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('v1_hub_settings_rollup'));
    -- another roller may have extended the chain while we waited
    SELECT c.span_ids, c.chain_end INTO span_ids, chain_end FROM v1_hub_settings_chain(p_from) c;

    LOOP
        next_day := (chain_end::date + 1)::timestamptz;
        IF next_day <= lim THEN
            stop := next_day;
        ELSE
            stop := date_bin(p_step, lim, chain_end::date::timestamptz);
            EXIT WHEN stop <= chain_end;
        END IF;
        span_ids := span_ids || v1_hub_settings_roll_span(chain_end, stop, p_now);
        chain_end := stop;
        IF stop = next_day THEN
            -- a day has closed: merge its steps into one day span
            day_start := (next_day::date - 1)::timestamptz;
            SELECT array_agg(id) INTO day_ids FROM v1_hub_stats_settings_spans
            WHERE id = ANY (span_ids) AND span_start >= day_start AND span_end <= next_day;
            IF cardinality(day_ids) > 1 AND EXISTS (
                    SELECT 1 FROM v1_hub_stats_settings_spans WHERE id = ANY (day_ids) AND span_start = day_start) THEN
                INSERT INTO v1_hub_stats_settings_spans (span_start, span_end, results, rolled_at)
                SELECT day_start, next_day, sum(results), p_now FROM v1_hub_stats_settings_spans
                WHERE id = ANY (day_ids)
                ON CONFLICT (span_start, span_end) DO NOTHING
                RETURNING id INTO merged;
                IF merged IS NOT NULL THEN
                    INSERT INTO v1_hub_stats_settings_by_span
                        (span_id, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
                         applied_block_img1a_cdn, applied_block_thumbnail_cdn, total, timed, sum_execution_ms,
                         success_count, blocked_count)
                    SELECT merged, applied_cart_click, applied_block_mercury, applied_block_image_cdn,
                           applied_block_img1a_cdn, applied_block_thumbnail_cdn, sum(total), sum(timed),
                           sum(sum_execution_ms), sum(success_count), sum(blocked_count)
                    FROM v1_hub_stats_settings_by_span WHERE span_id = ANY (day_ids)
                    GROUP BY 2, 3, 4, 5, 6;
                    span_ids := ARRAY(SELECT unnest(span_ids) EXCEPT SELECT unnest(day_ids)) || merged;
                END IF;
            END IF;
        END IF;
        -- go on along spans that exist from here (rolled up for a window that starts later)
        here := chain_end;
        SELECT c.span_ids, c.chain_end INTO more, chain_end FROM v1_hub_settings_chain(here) c;
        span_ids := span_ids || more;
    END LOOP;

    -- spans inside a longer span made over an hour ago are no reader's choice any more
    DELETE FROM v1_hub_stats_settings_spans s
    WHERE s.id <> ALL (span_ids) AND EXISTS (
        SELECT 1 FROM v1_hub_stats_settings_spans m
        WHERE m.span_start <= s.span_start AND m.span_end >= s.span_end AND m.id <> s.id
          AND (m.span_end - m.span_start) > (s.span_end - s.span_start) AND m.rolled_at < p_now - interval '1 hour');
END;
$$;

-- Forgets every settings span (after back-dated results were written by hand): the next reads roll
-- the windows up again from the raw rows.
CREATE OR REPLACE FUNCTION v1_hub_settings_rollup_reset() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('v1_hub_settings_rollup'));
    DELETE FROM v1_hub_stats_settings_spans;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
