-- The worker protocol: each call is one SQL function, one round trip (see migrations/0002_ledger.sql).

-- name: allocate_work
SELECT v1_hub_allocate_work(%(client_ip)s, %(instance_number)s, %(user_folder_number)s, %(count)s,
                            %(now)s, %(lease_seconds)s, %(attempts_factor)s)::text;

-- name: submit_result
SELECT v1_hub_submit_result(%(allocation_key)s, %(status)s, %(execution_time_ms)s, %(rank)s, %(page)s,
                            %(block_type)s, %(error_message)s, %(applied_settings)s, %(products)s,
                            %(result_data)s, %(client_ip)s, %(now)s, %(cooldown_after)s, %(cooldown_seconds)s);

-- name: submit_results
SELECT v1_hub_submit_results(%(items)s, %(client_ip)s, %(now)s, %(cooldown_after)s, %(cooldown_seconds)s);

-- name: extend_lease
SELECT v1_hub_extend_lease(%(allocation_key)s, %(seconds)s, %(now)s, %(max_lifetime_seconds)s, %(client_ip)s);

-- name: release_lease
SELECT v1_hub_release_lease(%(allocation_key)s, %(reason)s, %(now)s, %(client_ip)s);

-- name: expire_leases
SELECT v1_hub_expire_leases(%(now)s, %(batch)s);

-- name: init_daily_work_tracking
SELECT init_daily_work_tracking(%(work_date)s);

-- name: ledger_day
SELECT * FROM v1_hub_daily_work_tracking WHERE work_date = %(work_date)s ORDER BY slot_id;
