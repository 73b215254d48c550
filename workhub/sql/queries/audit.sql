-- The audit trail (written by the v1_hub_audit trigger) and the external-trigger log.

-- Newest first; keyset pagination with before_id.
-- name: query_audit_log
SELECT id, table_name, record_id, action, changed_by, changed_at, old_data, new_data
FROM v1_hub_audit_log
WHERE (%(table_name)s::text IS NULL OR table_name = %(table_name)s)
  AND (%(record_id)s::integer IS NULL OR record_id = %(record_id)s)
  AND (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(changed_by)s::text IS NULL OR changed_by = %(changed_by)s)
  AND (%(since)s::timestamptz IS NULL OR changed_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR changed_at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: record_external_trigger
INSERT INTO v1_hub_external_triggers (site_id, trigger_type, payload, response_status, slot_id, source_ip, created_at)
VALUES (%(site_id)s, %(trigger_type)s, %(payload)s, %(response_status)s, %(slot_id)s, %(source_ip)s, %(created_at)s);

-- name: query_external_triggers
SELECT id, site_id, trigger_type, payload, response_status, slot_id, host(source_ip) AS source_ip, created_at
FROM v1_hub_external_triggers
WHERE (%(site_id)s::integer IS NULL OR site_id = %(site_id)s)
  AND (%(slot_id)s::integer IS NULL OR slot_id = %(slot_id)s)
  AND (%(trigger_type)s::text IS NULL OR trigger_type = %(trigger_type)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;
