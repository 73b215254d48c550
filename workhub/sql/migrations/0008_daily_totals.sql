-- Per-day ledger totals of closed days (issue 10): the trend charts read one row per day instead of
-- summing every slot's tracking row (100,000 a day at 100k slots, 1.4 M rows for a 14-day chart).
--
-- Exact, not a cache: a change to a closed day's tracking rows marks its totals stale in the same
-- transaction, and a stale or missing day is summed live until the minute job recomputes it.
-- "Closed" is two or more days before the hub's date. The triggers fire for rows before the session's
-- date, so today's rows (the hot path) never fire them, and a session whose date is a day behind the
-- hub's (another TimeZone) still marks every day the charts read from here.
-- The mark always takes the totals row's lock (no "AND NOT stale"): a recompute holds that lock while
-- it sums, so a change either committed before the sum (and is in it) or marks the day stale after it.

CREATE TABLE v1_hub_daily_totals (
    work_date     date PRIMARY KEY,
    slots         bigint NOT NULL,
    target        bigint NOT NULL,
    allocated     bigint NOT NULL,
    success       bigint NOT NULL,
    failed        bigint NOT NULL,
    blocked       bigint NOT NULL,
    expired       bigint NOT NULL,
    released      bigint NOT NULL,
    stale         boolean NOT NULL DEFAULT false,
    computed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION v1_hub_daily_totals_mark_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        UPDATE v1_hub_daily_totals SET stale = true WHERE work_date = NEW.work_date;
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.work_date <> NEW.work_date) THEN
        UPDATE v1_hub_daily_totals SET stale = true WHERE work_date = OLD.work_date;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER v1_hub_daily_totals_ins AFTER INSERT ON v1_hub_daily_work_tracking
    FOR EACH ROW WHEN (NEW.work_date < current_date) EXECUTE FUNCTION v1_hub_daily_totals_mark_stale();
CREATE TRIGGER v1_hub_daily_totals_upd AFTER UPDATE ON v1_hub_daily_work_tracking
    FOR EACH ROW WHEN (NEW.work_date < current_date OR OLD.work_date < current_date)
    EXECUTE FUNCTION v1_hub_daily_totals_mark_stale();
CREATE TRIGGER v1_hub_daily_totals_del AFTER DELETE ON v1_hub_daily_work_tracking
    FOR EACH ROW WHEN (OLD.work_date < current_date) EXECUTE FUNCTION v1_hub_daily_totals_mark_stale();

-- Recomputes the stale or missing totals of the days in [p_from, p_before); returns how many it wrote.
-- A day without tracking rows gets no totals row (it may be in the archived days' rollup instead).
-- enable_seqscan = off: the generic plan expects a day to have (rows / days) rows, so "does day d have
-- rows" became a sequential scan of the whole table for each day without any (auto_explain: 160-200 ms
-- per empty day at 800k rows); every statement here reads one day through the work_date index.
CREATE FUNCTION v1_hub_refresh_daily_totals(p_from date, p_before date) RETURNS integer
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    d date;
    n integer := 0;
BEGIN
    FOR d IN SELECT g::date FROM generate_series(p_from, p_before - 1, interval '1 day') AS g
             WHERE NOT EXISTS (SELECT 1 FROM v1_hub_daily_totals x WHERE x.work_date = g::date AND NOT x.stale)
    LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM v1_hub_daily_work_tracking WHERE work_date = d);
        INSERT INTO v1_hub_daily_totals (work_date, slots, target, allocated, success, failed, blocked,
                                         expired, released, stale)
        VALUES (d, 0, 0, 0, 0, 0, 0, 0, 0, true)
        ON CONFLICT (work_date) DO NOTHING;
        -- from here a change to day d waits for this transaction; the sum below (a new snapshot, taken
        -- after the lock) sees every change that committed before it
        PERFORM 1 FROM v1_hub_daily_totals WHERE work_date = d FOR UPDATE;
        UPDATE v1_hub_daily_totals x
        SET (slots, target, allocated, success, failed, blocked, expired, released) = (
                SELECT count(*), coalesce(sum(target_count), 0), coalesce(sum(allocated_count), 0),
                       coalesce(sum(success_count), 0), coalesce(sum(failed_count), 0),
                       coalesce(sum(blocked_count), 0), coalesce(sum(expired_count), 0),
                       coalesce(sum(released_count), 0)
                FROM v1_hub_daily_work_tracking t WHERE t.work_date = d),
            stale = false,
            computed_at = clock_timestamp()
        WHERE x.work_date = d;
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;
