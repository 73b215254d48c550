-- Monitoring: the /api/monitor snapshot and the database-side Prometheus figures.

-- name: monitor_overview
-- One round trip for the live figures; every count uses an index (partial index on open leases,
-- tracking by work_date, clients by last_seen_at).
SELECT
    (SELECT count(*) FROM v1_hub_work_slots s
      WHERE s.is_active AND %(work_date)s::date BETWEEN s.start_date AND s.end_date) AS active_slots,
    (SELECT count(*) FROM v1_hub_work_allocations WHERE status = 'allocated') AS in_flight,
    (SELECT count(*) FROM v1_hub_clients
      WHERE last_seen_at >= %(now)s::timestamptz - make_interval(secs => %(online_seconds)s)) AS clients_online,
    (SELECT count(*) FROM v1_hub_clients) AS clients_total,
    (SELECT count(*) FROM v1_hub_alerts WHERE status = 'firing') AS alerts_firing;

-- name: monitor_today
SELECT %(work_date)s::date AS work_date,
       coalesce(sum(target_count), 0)::bigint    AS target,
       coalesce(sum(allocated_count), 0)::bigint AS allocated,
       coalesce(sum(in_flight_count), 0)::bigint AS in_flight,
       coalesce(sum(success_count), 0)::bigint   AS success,
       coalesce(sum(failed_count), 0)::bigint    AS failed,
       coalesce(sum(blocked_count), 0)::bigint   AS blocked,
       coalesce(sum(expired_count), 0)::bigint   AS expired,
       coalesce(sum(released_count), 0)::bigint  AS released,
       count(*) FILTER (WHERE success_count >= target_count) AS slots_complete,
       count(*) AS slots_tracked
FROM v1_hub_daily_work_tracking
WHERE work_date = %(work_date)s::date;

-- name: monitor_firing_alerts
SELECT id, rule, subject, severity, status, message, value, threshold, details, fired_at, last_eval_at
FROM v1_hub_alerts
WHERE status = 'firing'
ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, fired_at DESC
LIMIT %(limit)s;

-- name: metrics_alerts_by_rule
SELECT rule, severity, count(*) AS firing
FROM v1_hub_alerts WHERE status = 'firing'
GROUP BY rule, severity;

-- name: metrics_maintenance_runs
-- Scheduler job runs as recorded by every hub process (so any process can report them).
SELECT job, status, count(*) AS runs,
       extract(epoch FROM max(finished_at))::double precision AS last_finished
FROM v1_hub_maintenance_runs
GROUP BY job, status;

-- name: metrics_db_connections
-- Connections of every hub process to this database, by state: the fleet-wide pool use.
SELECT coalesce(state, 'unknown') AS state, count(*) AS connections
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'workhub'
GROUP BY 1;
