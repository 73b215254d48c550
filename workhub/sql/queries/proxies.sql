-- The proxy pool. Listings never select password or agent_token_hash.

-- name: import_proxies
-- All rows in one statement; endpoints that already exist are skipped here and reported by the
-- caller (which then rolls the whole import back).
WITH incoming AS (
    SELECT r.*, o.n
    FROM jsonb_array_elements(%(proxies)s::jsonb) WITH ORDINALITY AS o(doc, n)
    CROSS JOIN LATERAL jsonb_to_record(o.doc) AS r(host text, port integer, protocol text, username text,
                                                   password text, max_uses integer, heartbeat_managed boolean)
), ins AS (
    INSERT INTO v1_hub_proxies (host, port, protocol, username, password, max_uses, heartbeat_managed)
    SELECT host, port, protocol, username, password, max_uses, coalesce(heartbeat_managed, false)
    FROM incoming ORDER BY n
    ON CONFLICT ON CONSTRAINT v1_hub_proxies_endpoint DO NOTHING
    RETURNING id, host, port, protocol, username
)
SELECT i.n, ins.id
FROM incoming i
LEFT JOIN ins ON ins.host = i.host AND ins.port = i.port AND ins.protocol = i.protocol
             AND ins.username IS NOT DISTINCT FROM i.username
ORDER BY i.n;

-- name: list_proxies
-- health and block_rate are over the last 7 days of usage_stats (today included).
SELECT p.id, p.host, p.port, p.protocol, p.username,
       p.password IS NOT NULL AS has_password,
       p.agent_token_hash IS NOT NULL AS has_agent_token,
       host(p.current_ip) AS current_ip, p.current_ip_since,
       p.use_count, p.max_uses, GREATEST(p.max_uses - p.use_count, 0) AS uses_left, p.total_uses,
       p.status, p.status_reason, p.status_changed_at, p.cooldown_until, p.consecutive_blocks,
       p.heartbeat_managed, p.last_heartbeat, p.last_used_at,
       p.success_count, p.fail_count, p.block_count,
       w.results AS results_7d, w.success AS success_7d, w.blocked AS blocked_7d,
       CASE WHEN w.results > 0 THEN round(w.success::numeric / w.results, 4)::float8 END AS health,
       CASE WHEN w.results > 0 THEN round(w.blocked::numeric / w.results, 4)::float8 END AS block_rate,
       p.created_at, p.updated_at
FROM v1_hub_proxies p
CROSS JOIN LATERAL (
    SELECT coalesce(sum((d.value->>'success')::bigint), 0)::bigint AS success,
           coalesce(sum((d.value->>'blocked')::bigint), 0)::bigint AS blocked,
           coalesce(sum(coalesce((d.value->>'success')::bigint, 0) + coalesce((d.value->>'failed')::bigint, 0)
                        + coalesce((d.value->>'blocked')::bigint, 0)), 0)::bigint AS results
    FROM jsonb_each(coalesce(p.usage_stats->'days', '{}')) AS d
    WHERE d.key >= (%(now)s::timestamptz::date - 6)::text
) w
WHERE (%(status)s::text IS NULL OR p.status = %(status)s::text)
  AND (%(proxy_id)s::integer IS NULL OR p.id = %(proxy_id)s::integer)
ORDER BY p.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_proxies
SELECT count(*) FROM v1_hub_proxies WHERE (%(status)s::text IS NULL OR status = %(status)s::text);

-- name: proxy_details
-- The parts of one proxy that a listing leaves out: IP history, recent daily usage.
SELECT ip_history,
       coalesce((SELECT jsonb_object_agg(d.key, d.value ORDER BY d.key)
                 FROM jsonb_each(coalesce(usage_stats->'days', '{}')) AS d
                 WHERE d.key >= (%(now)s::timestamptz::date - 13)::text), '{}') AS usage_days
FROM v1_hub_proxies WHERE id = %(proxy_id)s;

-- name: proxy_events
SELECT id, proxy_id, from_status, to_status, reason, changed_by, changed_at
FROM v1_hub_proxy_events
WHERE proxy_id = %(proxy_id)s
ORDER BY changed_at DESC, id DESC
LIMIT %(limit)s;

-- name: proxy_heartbeat
SELECT v1_hub_proxy_heartbeat(%(proxy_id)s, %(ip)s::inet, %(now)s, %(history_max)s, %(trusted)s,
                              %(token_hash)s);

-- name: refresh_proxy_states
SELECT v1_hub_refresh_proxy_states(%(now)s, %(offline_after)s);

-- name: prune_proxy_history
-- Daily usage older than the kept window, and transition events older than it, go.
WITH stats AS (
    UPDATE v1_hub_proxies p
    SET usage_stats = jsonb_set(p.usage_stats, '{days}',
        coalesce((SELECT jsonb_object_agg(d.key, d.value) FROM jsonb_each(p.usage_stats->'days') AS d
                  WHERE d.key >= %(keep_from)s::text), '{}'))
    WHERE p.id IN (SELECT id FROM v1_hub_proxies q
                   WHERE EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(q.usage_stats->'days', '{}')) AS k
                                 WHERE k < %(keep_from)s::text)
                   ORDER BY id FOR UPDATE SKIP LOCKED)
    RETURNING 1
), events AS (
    DELETE FROM v1_hub_proxy_events WHERE changed_at < %(keep_from)s::date RETURNING 1
)
SELECT (SELECT count(*) FROM stats) AS usage_rows, (SELECT count(*) FROM events) AS events;

-- name: pool_figures
-- available: what the allocator may hand out right now. utilisation: uses spent / use budget over
-- the proxies that are not disabled.
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'active' AND use_count < max_uses
                          AND (cooldown_until IS NULL OR cooldown_until <= %(now)s)) AS available,
       count(*) FILTER (WHERE status = 'active') AS active,
       count(*) FILTER (WHERE status = 'exhausted') AS exhausted,
       count(*) FILTER (WHERE status = 'cooldown') AS cooldown,
       count(*) FILTER (WHERE status = 'offline') AS offline,
       count(*) FILTER (WHERE status = 'disabled') AS disabled,
       coalesce(sum(LEAST(use_count, max_uses)) FILTER (WHERE status <> 'disabled'), 0)::bigint AS uses,
       coalesce(sum(max_uses) FILTER (WHERE status <> 'disabled'), 0)::bigint AS budget,
       coalesce(sum(GREATEST(max_uses - use_count, 0))
                FILTER (WHERE status = 'active' AND (cooldown_until IS NULL OR cooldown_until <= %(now)s)),
                0)::bigint AS uses_left
FROM v1_hub_proxies;

-- name: proxy_block_rates
-- Per proxy over the alarm window, from the results themselves (exact to the second).
SELECT r.proxy_id, p.host, p.port, p.status,
       count(*)::bigint AS results,
       count(*) FILTER (WHERE r.is_blocked)::bigint AS blocked,
       round((count(*) FILTER (WHERE r.is_blocked))::numeric / count(*), 4)::float8 AS block_rate
FROM v1_hub_work_results r
JOIN v1_hub_proxies p ON p.id = r.proxy_id
WHERE r.created_at >= %(since)s AND r.created_at <= %(now)s AND r.proxy_id IS NOT NULL
GROUP BY r.proxy_id, p.host, p.port, p.status
ORDER BY block_rate DESC, r.proxy_id;

-- name: lock_proxy
SELECT id, status, use_count, max_uses FROM v1_hub_proxies WHERE id = %(proxy_id)s FOR UPDATE;

-- name: reset_proxy
-- A manual rotation: fresh budget and reputation; a disabled proxy stays disabled.
UPDATE v1_hub_proxies
SET use_count = 0, consecutive_blocks = 0, cooldown_until = NULL,
    current_ip_uses_start = total_uses,
    status = CASE WHEN status = 'disabled' THEN status ELSE 'active' END,
    status_reason = CASE WHEN status = 'disabled' THEN status_reason ELSE %(reason)s END,
    status_changed_at = CASE WHEN status IN ('disabled', 'active') THEN status_changed_at ELSE %(now)s END,
    updated_at = %(now)s
WHERE id = %(proxy_id)s
RETURNING id;

-- name: disable_proxy
UPDATE v1_hub_proxies
SET status = 'disabled', status_reason = %(reason)s, cooldown_until = NULL,
    status_changed_at = CASE WHEN status = 'disabled' THEN status_changed_at ELSE %(now)s END,
    updated_at = %(now)s
WHERE id = %(proxy_id)s
RETURNING id;

-- name: enable_proxy
-- Back to where its budget puts it; the next refresh sends a silent heartbeat-managed proxy offline.
UPDATE v1_hub_proxies
SET status = v1_hub_proxy_budget_status(use_count, max_uses),
    status_reason = %(reason)s, consecutive_blocks = 0, status_changed_at = %(now)s, updated_at = %(now)s
WHERE id = %(proxy_id)s AND status = 'disabled'
RETURNING id;

-- name: set_proxy_max_uses
UPDATE v1_hub_proxies
SET max_uses = %(max_uses)s,
    status = CASE WHEN status IN ('active', 'exhausted') THEN v1_hub_proxy_budget_status(use_count, %(max_uses)s)
                  ELSE status END,
    status_reason = CASE WHEN status IN ('active', 'exhausted')
                              AND status <> v1_hub_proxy_budget_status(use_count, %(max_uses)s)
                         THEN 'max_uses changed to ' || %(max_uses)s ELSE status_reason END,
    status_changed_at = CASE WHEN status IN ('active', 'exhausted')
                                  AND status <> v1_hub_proxy_budget_status(use_count, %(max_uses)s)
                             THEN %(now)s ELSE status_changed_at END,
    updated_at = %(now)s
WHERE id = %(proxy_id)s
RETURNING id;

-- name: proxy_agent_token_hash
SELECT agent_token_hash FROM v1_hub_proxies WHERE id = %(proxy_id)s;

-- name: set_proxy_agent_token
UPDATE v1_hub_proxies
SET agent_token_hash = %(token_hash)s, heartbeat_managed = true, updated_at = %(now)s
WHERE id = %(proxy_id)s
RETURNING id;

-- name: record_proxy_event
-- Operator actions that leave the status as it was (a reset of an active proxy) are logged here;
-- status changes are logged by the transition trigger.
INSERT INTO v1_hub_proxy_events (proxy_id, from_status, to_status, reason, changed_by, changed_at)
VALUES (%(proxy_id)s, %(status)s, %(status)s, %(reason)s,
        left(coalesce(nullif(current_setting('workhub.actor', true), ''), 'hub'), 100), %(now)s);
