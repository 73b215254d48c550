-- pgbench script: batch allocation (count = :count packages per call), the SQL behind
-- GET /api/allocate-work?count=50.
SELECT v1_hub_allocate_work('127.0.0.1'::inet, 1, 1, :count, now(), 300, 3)::text;
