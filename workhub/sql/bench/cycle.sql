-- pgbench script: one worker cycle, the same two SQL calls the hub makes for
-- GET /api/allocate-work and POST /api/submit-result (see sql/queries/ledger.sql), each its own
-- transaction, run with -M prepared. A cycle that finds no work submits a nil key, which the
-- ledger answers with unknown_allocation_key (counted by the bench, never an abort).
\set instance random(1, 64)
SELECT coalesce(v1_hub_allocate_work('127.0.0.1'::inet, :instance, 1, 1, now(), 300, 3)->'allocations'->0->>'allocation_key', '00000000-0000-0000-0000-000000000000') AS key \gset
SELECT v1_hub_submit_result(:key::uuid, 'success', 5000, 7, 1, NULL, NULL, NULL, '[{"code": "BENCH", "name": "bench product", "price": 1000, "rank": 7, "page": 1}]'::jsonb, '{"bench": true}'::jsonb, '127.0.0.1'::inet, now(), 3, 600);
