-- Each User's current state: its latest event decides whether it
-- is deleted, its latest fetched record gives its fields.
{{ mobaro_current_state(ref('stg_mobaro__users'), 'user_id') }}
