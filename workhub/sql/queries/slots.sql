-- Work slots.

-- name: create_slot
INSERT INTO v1_hub_work_slots
    (keyword, code, start_date, end_date, daily_work_count, cart_click_enabled, block_mercury,
     block_image_cdn, block_img1a_cdn, block_thumbnail_cdn, is_active, external_site_id, external_ref,
     max_daily_attempts, pace)
VALUES (%(keyword)s, %(code)s, %(start_date)s, %(end_date)s, %(daily_work_count)s,
        coalesce(%(cart_click_enabled)s, false), coalesce(%(block_mercury)s, false),
        coalesce(%(block_image_cdn)s, false), coalesce(%(block_img1a_cdn)s, false),
        coalesce(%(block_thumbnail_cdn)s, false), coalesce(%(is_active)s, true), %(site_id)s,
        %(external_ref)s, %(max_daily_attempts)s, coalesce(%(pace)s, 'asap'))
ON CONFLICT (external_site_id, external_ref) DO NOTHING
RETURNING *;

-- name: slot_by_ref
SELECT * FROM v1_hub_work_slots WHERE external_site_id = %(site_id)s AND external_ref = %(external_ref)s;
