-- Customers (external sites) and their keys.

-- name: site_by_key_hash
SELECT id, name, is_active FROM v1_hub_external_sites WHERE api_key_hash = %(api_key_hash)s;

-- name: create_site
INSERT INTO v1_hub_external_sites (name, api_key_hash, api_key_prefix, webhook_url, webhook_secret)
VALUES (%(name)s, %(api_key_hash)s, %(api_key_prefix)s, %(webhook_url)s, %(webhook_secret)s)
RETURNING id, name, api_key_prefix, is_active, webhook_url, created_at, updated_at;

-- name: site_exists
SELECT EXISTS (SELECT 1 FROM v1_hub_external_sites WHERE id = %(site_id)s);

-- name: list_sites
SELECT s.id, s.name, s.api_key_prefix, s.is_active, s.webhook_url, s.webhook_secret IS NOT NULL AS has_webhook_secret,
       s.created_at, s.updated_at,
       (SELECT count(*) FROM v1_hub_work_slots w WHERE w.external_site_id = s.id AND w.is_active) AS active_slots
FROM v1_hub_external_sites s
WHERE (%(is_active)s::boolean IS NULL OR s.is_active = %(is_active)s)
  AND s.id > %(after_id)s
ORDER BY s.id
LIMIT %(limit)s;

-- name: get_site
SELECT s.id, s.name, s.api_key_prefix, s.is_active, s.webhook_url, s.webhook_secret IS NOT NULL AS has_webhook_secret,
       s.created_at, s.updated_at,
       (SELECT count(*) FROM v1_hub_work_slots w WHERE w.external_site_id = s.id AND w.is_active) AS active_slots
FROM v1_hub_external_sites s
WHERE s.id = %(site_id)s;

-- name: lock_site
SELECT id, name, is_active, webhook_url, webhook_secret FROM v1_hub_external_sites WHERE id = %(site_id)s FOR UPDATE;

-- name: update_site
UPDATE v1_hub_external_sites
SET name = %(name)s, is_active = %(is_active)s, webhook_url = %(webhook_url)s, webhook_secret = %(webhook_secret)s
WHERE id = %(site_id)s;

-- name: rotate_site_key
UPDATE v1_hub_external_sites SET api_key_hash = %(api_key_hash)s, api_key_prefix = %(api_key_prefix)s
WHERE id = %(site_id)s
RETURNING id;
