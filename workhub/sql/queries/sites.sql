-- Customers (external sites) and their keys.

-- name: site_by_key_hash
SELECT id, name, is_active FROM v1_hub_external_sites WHERE api_key_hash = %(api_key_hash)s;

-- name: create_site
INSERT INTO v1_hub_external_sites (name, api_key_hash, api_key_prefix, webhook_url, webhook_secret)
VALUES (%(name)s, %(api_key_hash)s, %(api_key_prefix)s, %(webhook_url)s, %(webhook_secret)s)
RETURNING id, name, api_key_prefix, is_active, webhook_url, created_at, updated_at;
