-- Client machines, as the admin API lists them.

-- name: list_clients
SELECT id, host(client_ip) AS client_ip, client_name, first_seen_at, last_seen_at,
       last_seen_at >= %(online_since)s AS online,
       request_count, allocation_count, result_count, success_count
FROM v1_hub_clients
WHERE (%(online)s::boolean IS NULL OR (last_seen_at >= %(online_since)s) = %(online)s)
  AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s;

-- name: client_counts
SELECT count(*) AS total, count(*) FILTER (WHERE last_seen_at >= %(online_since)s) AS online
FROM v1_hub_clients;
