-- One row per Result that is not deleted: its outcome, score, timing and
-- schedule, dated on its location's local day (of its slot, else its start).
select
    results.account,
    results.result_id,
    results.checklist_id,
    results.location_id,
    results.asset_id,
    results.user_id,
    results.result_status,
    {{ mobaro_in('results.result_status', 'mobaro_result_passed_statuses') }} as is_passed,
    {{ mobaro_in('results.result_status', 'mobaro_result_failed_statuses') }} as is_failed,
    {{ mobaro_in('results.result_status', 'mobaro_result_missed_statuses') }} as is_missed,
    {{ mobaro_in('results.result_status', 'mobaro_result_invalidated_statuses') }} as is_invalidated,
    coalesce(results.schedule_kind, 'Unknown') as schedule_kind,
    results.slot_at,
    results.missed_handling,
    results.is_critical_for_operation,
    results.score,
    results.max_score,
    round(results.score * 100, 2) as score_percentage,
    results.started_at,
    results.answered_at,
    results.submitted_at,
    {{ dbt.datediff('results.started_at', 'coalesce(results.submitted_at, results.answered_at)', 'second') }} / 60.0 as duration_minutes,
    cast(timezone(
        coalesce(calendar.time_zone, '{{ var("mobaro_default_time_zone") }}'),
        coalesce(results.slot_at, results.started_at, results.created_at, results.last_event_at)
    ) as date) as result_date,
    coalesce(len(results.answer_values), 0) as answered_questions,
    results.updated_at,
    results.last_event_at
from {{ ref('int_mobaro__results_current') }} as results
left join {{ ref('int_location_calendar') }} as calendar
    on calendar.account = results.account
    and calendar.location_id = results.location_id
where not results.is_deleted
