-- Alarm engine: measurements per rule, then one statement that opens, refreshes and resolves alerts.

-- name: alarm_lock
-- Evaluations from several hub processes take turns (the unique index is the hard guarantee).
SELECT pg_advisory_xact_lock(hashtext('workhub.alarms.evaluate'));

-- name: alarm_result_rates
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'success') AS success,
       count(*) FILTER (WHERE is_blocked OR status = 'blocked') AS blocked
FROM v1_hub_work_results
WHERE created_at >= %(since)s::timestamptz AND created_at <= %(now)s::timestamptz;

-- name: alarm_offline_clients
-- Clients seen within the lookback but silent for longer than the offline threshold.
SELECT host(client_ip) AS client_ip, client_name, first_seen_at, last_seen_at
FROM v1_hub_clients
WHERE last_seen_at < %(offline_before)s::timestamptz
  AND last_seen_at >= %(active_since)s::timestamptz
ORDER BY last_seen_at
LIMIT %(limit)s;

-- name: alarm_mark_clients_offline
UPDATE v1_hub_clients SET offline_alerted = true
WHERE client_ip = ANY(%(ips)s::inet[]) AND NOT offline_alerted;

-- name: alarm_apply
-- conditions: a JSON array of the alerts that hold now; open alerts of the evaluated rules that are
-- not among them resolve. New and resolved alerts get notified_at = NULL (the notifier's queue).
WITH cond AS (
    SELECT * FROM jsonb_to_recordset(%(conditions)s::jsonb)
        AS c(rule text, subject text, severity text, message text, value double precision,
             threshold double precision, details jsonb)
), upserted AS (
    INSERT INTO v1_hub_alerts AS a (rule, subject, severity, status, message, value, threshold, details,
                                    fired_at, last_eval_at)
    SELECT rule, coalesce(subject, ''), severity, 'firing', message, value, threshold,
           coalesce(details, '{}'::jsonb), %(now)s, %(now)s
    FROM cond
    ON CONFLICT (rule, subject) WHERE status = 'firing'
    DO UPDATE SET severity = EXCLUDED.severity, message = EXCLUDED.message, value = EXCLUDED.value,
                  threshold = EXCLUDED.threshold, details = a.details || EXCLUDED.details,
                  last_eval_at = EXCLUDED.last_eval_at
    RETURNING a.id, a.rule, a.subject, (a.xmax = 0) AS inserted
), resolved AS (
    UPDATE v1_hub_alerts a
    SET status = 'resolved', resolved_at = %(now)s, last_eval_at = %(now)s, notified_at = NULL
    WHERE a.status = 'firing' AND a.rule = ANY(%(rules)s::text[])
      AND NOT EXISTS (SELECT 1 FROM cond c WHERE c.rule = a.rule AND coalesce(c.subject, '') = a.subject)
    RETURNING a.id, a.rule, a.subject
)
SELECT (SELECT count(*) FROM upserted) AS firing,
       (SELECT count(*) FROM upserted WHERE inserted) AS fired,
       (SELECT count(*) FROM resolved) AS resolved,
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', id, 'rule', rule, 'subject', subject))
                 FROM upserted WHERE inserted), '[]'::jsonb) AS fired_items,
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', id, 'rule', rule, 'subject', subject))
                 FROM resolved), '[]'::jsonb) AS resolved_items;

-- name: alarm_list
SELECT id, rule, subject, severity, status, message, value, threshold, details, fired_at, last_eval_at,
       resolved_at, notified_at
FROM v1_hub_alerts
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY (status = 'firing') DESC, fired_at DESC, id DESC
LIMIT %(limit)s;

-- name: alarm_get
SELECT id, rule, subject, severity, status, message, value, threshold, details, fired_at, last_eval_at,
       resolved_at, notified_at
FROM v1_hub_alerts WHERE id = %(id)s;

-- name: alarm_claim_notifications
-- Claim unsent alert events (commit before sending, so no transaction waits on the webhook).
UPDATE v1_hub_alerts a SET notified_at = %(now)s
WHERE a.id IN (SELECT id FROM v1_hub_alerts WHERE notified_at IS NULL
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING a.id, a.rule, a.subject, a.severity, a.status, a.message, a.value, a.threshold, a.details,
          a.fired_at, a.resolved_at;

-- name: alarm_notification_failed
-- Put a failed delivery back in the queue until it has failed max_attempts times.
UPDATE v1_hub_alerts
SET notified_at = CASE WHEN coalesce((details->>'notify_failures')::integer, 0) + 1 >= %(max_attempts)s
                       THEN notified_at END,
    details = details || jsonb_build_object('notify_failures',
                                            coalesce((details->>'notify_failures')::integer, 0) + 1,
                                            'notify_error', %(error)s::text)
WHERE id = %(id)s;
