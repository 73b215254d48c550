-- The proxy pool.

-- name: create_proxy
INSERT INTO v1_hub_proxies (host, port, protocol, username, password, max_uses)
VALUES (%(host)s, %(port)s, %(protocol)s, %(username)s, %(password)s, %(max_uses)s)
RETURNING id;
