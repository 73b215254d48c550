-- The webhook outbox (rows queued by v1_hub_submit_result when a slot completes its day).

-- Claims due deliveries: pushing next_attempt_at out is the claim, so a deliverer that dies mid-flight
-- leaves the row due again after the claim expires, and concurrent deliverers skip each other's rows.
-- name: claim_webhook_deliveries
UPDATE v1_hub_webhook_deliveries d
SET next_attempt_at = %(claim_until)s
FROM v1_hub_external_sites s
WHERE d.id IN (SELECT id FROM v1_hub_webhook_deliveries
               WHERE status = 'pending' AND next_attempt_at <= %(now)s
               ORDER BY next_attempt_at, id
               LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED)
  AND s.id = d.site_id
RETURNING d.id, d.site_id, d.event, d.payload, d.attempts, d.created_at, s.webhook_url, s.webhook_secret,
          s.is_active;

-- name: webhook_delivered
UPDATE v1_hub_webhook_deliveries
SET status = 'delivered', attempts = attempts + 1, last_status = %(last_status)s, last_error = NULL,
    delivered_at = %(now)s
WHERE id = %(id)s AND status = 'pending';

-- Another attempt failed: back off, or give up after the last one.
-- name: webhook_attempt_failed
UPDATE v1_hub_webhook_deliveries
SET attempts = attempts + 1, last_status = %(last_status)s, last_error = left(%(last_error)s, 500),
    status = CASE WHEN attempts + 1 >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = CASE WHEN attempts + 1 >= %(max_attempts)s THEN next_attempt_at
                           ELSE %(now)s + make_interval(secs => LEAST(%(backoff_seconds)s * power(2, attempts),
                                                                         %(backoff_max_seconds)s)) END
WHERE id = %(id)s AND status = 'pending'
RETURNING status, attempts, next_attempt_at;

-- name: webhook_cancelled
UPDATE v1_hub_webhook_deliveries
SET status = 'failed', last_error = %(reason)s
WHERE id = %(id)s AND status = 'pending';

-- name: list_webhook_deliveries
SELECT id, site_id, event, payload, status, attempts, next_attempt_at, last_status, last_error, created_at,
       delivered_at
FROM v1_hub_webhook_deliveries
WHERE (%(site_id)s::integer IS NULL OR site_id = %(site_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;
