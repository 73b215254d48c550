-- Per-client analysis speed (issue 10): an exact rollup of the operations guide's query 3.3 (performance
-- per client), so the day's numbers come from a few thousand rollup rows plus the last minutes of raw
-- activity log rows instead of every log row of the day (180k+ at 10 M results).
--
-- * v1_hub_client_day_marks: per day, how far it is rolled up: [day_start, rolled_until) of reported_at.
--   A day is keyed by its start instant, with its end, both taken in the roller's session TimeZone (as
--   the reader's `%(day)s::date::timestamptz`): a reader whose TimeZone cuts days elsewhere matches no
--   mark and reads the day raw, still exact.
-- * v1_hub_client_day_rollup: per day, client_ip and instance_number (NULL is an instance of its own:
--   NULLS NOT DISTINCT) the integer sums the guide's aggregates are made of: tasks (COUNT(*)), timed and
--   sum_execution_ms (AVG over the rows that have a time), successes, failures, blocks, results (action
--   'submit') and last_activity (max reported_at). Keyed by instance, so COUNT(DISTINCT instance) over
--   rollup rows plus raw rows is exact. The join to v1_hub_clients is the reader's, as in the guide.
--
-- The reader (named query analysis_client_performance) reads, in one statement and so one snapshot, the
-- day's rollup rows and the raw rows from rolled_until to the day's end. Only the minute job writes here,
-- so the reader stays read-only (it may run on a replica).
--
-- Lag assumption: the ledger functions (0002, 0006) stamp reported_at with the hub clock passed in
-- (p_now) and commit within their short transaction, so once the roller's hub clock is p_lag (5 minutes)
-- past an instant, no more rows stamped before it will commit (this needs hub clocks within a few
-- seconds of each other and no ledger call running for minutes). Limitation (as for every rollup here):
-- rows committed later with a reported_at inside an already rolled-up range (hand-written or imported
-- back-dated rows, a transaction held open past the lag) are not seen;
-- v1_hub_client_day_rollup_reset(day) makes that day read raw again until the next roll.

CREATE TABLE IF NOT EXISTS v1_hub_client_day_marks (
    day_start     timestamptz PRIMARY KEY,
    day_end       timestamptz NOT NULL,
    rolled_until  timestamptz NOT NULL,
    rolled_at     timestamptz NOT NULL,
    CONSTRAINT v1_hub_client_day_marks_range
        CHECK (day_end > day_start AND rolled_until >= day_start AND rolled_until <= day_end)
);

CREATE TABLE IF NOT EXISTS v1_hub_client_day_rollup (
    day_start         timestamptz NOT NULL REFERENCES v1_hub_client_day_marks (day_start) ON DELETE CASCADE,
    client_ip         inet NOT NULL,
    instance_number   integer,
    tasks             bigint NOT NULL,
    timed             bigint NOT NULL,
    sum_execution_ms  bigint NOT NULL,
    successes         bigint NOT NULL,
    failures          bigint NOT NULL,
    blocks            bigint NOT NULL,
    results           bigint NOT NULL,
    last_activity     timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS v1_hub_client_day_rollup_key ON v1_hub_client_day_rollup
    (day_start, client_ip, instance_number) NULLS NOT DISTINCT;

-- The guide's 3.3 aggregates over the activity log rows reported in [p_from, p_to), per client and
-- instance: what the roller adds to the rollup and what the reader adds after the day's mark, one
-- definition for both. A plain SQL function, so the planner inlines it into either query (the
-- reported_at index still drives). sum_execution_ms is NULL when no row in the group has a time.
CREATE OR REPLACE FUNCTION v1_hub_client_log_sums(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (client_ip inet, instance_number integer, tasks bigint, timed bigint, sum_execution_ms bigint,
               successes bigint, failures bigint, blocks bigint, results bigint, last_activity timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT al.client_ip, al.instance_number, count(*), count(al.execution_time_ms),
           sum(al.execution_time_ms)::bigint,
           count(*) FILTER (WHERE al.status = 'success'),
           count(*) FILTER (WHERE al.status = 'failed'),
           count(*) FILTER (WHERE al.status = 'blocked'),
           count(*) FILTER (WHERE al.action = 'submit'),
           max(al.reported_at)
    FROM v1_hub_client_activity_logs al
    WHERE al.reported_at >= p_from AND al.reported_at < p_to
    GROUP BY al.client_ip, al.instance_number
$$;

-- Advances day p_day (a date of this session's TimeZone) to date_bin(p_step, p_now - p_lag) from its
-- midnight, or to its end once p_now - p_lag is past it, adding the rows of [old mark, new mark) to the
-- rollup in the same transaction. Returns the day's mark and how many log rows this call added.
-- Lock-free and one index lookup when there is nothing to do; rollers are serialized by an advisory
-- lock, and the mark row lock makes a roller in a REPEATABLE READ transaction fail rather than count twice.
CREATE OR REPLACE FUNCTION v1_hub_client_day_rollup(p_day date, p_now timestamptz,
                                                    p_step interval DEFAULT interval '15 minutes',
                                                    p_lag interval DEFAULT interval '5 minutes',
                                                    OUT rolled_until timestamptz, OUT log_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_start  timestamptz := p_day::timestamptz;
    v_end    timestamptz := (p_day + 1)::timestamptz;
    lim      timestamptz := p_now - p_lag;
    target   timestamptz;
    done     timestamptz;
BEGIN
    log_rows := 0;
    target := CASE WHEN lim >= v_end THEN v_end ELSE date_bin(p_step, lim, v_start) END;
    SELECT m.rolled_until INTO done FROM v1_hub_client_day_marks m
    WHERE m.day_start = v_start AND m.day_end = v_end;
    rolled_until := coalesce(done, v_start);
    IF target <= rolled_until THEN   -- nothing closed since (or a day that has not begun)
        RETURN;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('v1_hub_client_day_rollup'));
    INSERT INTO v1_hub_client_day_marks (day_start, day_end, rolled_until, rolled_at)
    VALUES (v_start, v_end, v_start, p_now)
    ON CONFLICT (day_start) DO NOTHING;
    SELECT m.rolled_until INTO done FROM v1_hub_client_day_marks m
    WHERE m.day_start = v_start AND m.day_end = v_end FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'day % is rolled up with other day bounds (another TimeZone)', p_day;
    END IF;
    rolled_until := done;
    IF target <= done THEN   -- another roller got here first
        RETURN;
    END IF;

    WITH fresh AS (
        SELECT * FROM v1_hub_client_log_sums(done, target)
    ), added AS (
        INSERT INTO v1_hub_client_day_rollup AS r
            (day_start, client_ip, instance_number, tasks, timed, sum_execution_ms, successes, failures, blocks,
             results, last_activity)
        SELECT v_start, client_ip, instance_number, tasks, timed, coalesce(sum_execution_ms, 0), successes,
               failures, blocks, results, last_activity
        FROM fresh
        ON CONFLICT (day_start, client_ip, instance_number) DO UPDATE SET
            tasks = r.tasks + EXCLUDED.tasks,
            timed = r.timed + EXCLUDED.timed,
            sum_execution_ms = r.sum_execution_ms + EXCLUDED.sum_execution_ms,
            successes = r.successes + EXCLUDED.successes,
            failures = r.failures + EXCLUDED.failures,
            blocks = r.blocks + EXCLUDED.blocks,
            results = r.results + EXCLUDED.results,
            last_activity = greatest(r.last_activity, EXCLUDED.last_activity)
    )
    SELECT coalesce(sum(tasks), 0) INTO log_rows FROM fresh;

    UPDATE v1_hub_client_day_marks SET rolled_until = target, rolled_at = p_now WHERE day_start = v_start;
    rolled_until := target;
END;
$$;

-- Forgets the rollup of one day (all days when NULL), e.g. after back-dated rows were written by hand:
-- the reader reads the day raw until the minute job rolls it up again. Returns the days forgotten.
CREATE OR REPLACE FUNCTION v1_hub_client_day_rollup_reset(p_day date DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('v1_hub_client_day_rollup'));
    DELETE FROM v1_hub_client_day_marks WHERE p_day IS NULL OR day_start = p_day::timestamptz;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
