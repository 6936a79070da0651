-- Per location, local day, checklist and schedule kind: slots completed
-- and missed, and Mobaro's compliance = completed / (completed + missed),
-- over Calendar and Ad Hoc slots (Continuous schedules cannot be missed).
-- A missed slot stays missed whether approved or rescheduled.
with results as (
    select
        *,
        (is_passed or is_failed) as is_completed
    from {{ ref('fct_result') }}
)

select
    results.account,
    results.location_id,
    results.result_date,
    results.checklist_id,
    results.schedule_kind,
    count(*) as slots,
    count(*) filter (where is_completed) as completed,
    count(*) filter (where is_missed) as missed,
    count(*) filter (where is_missed and {{ mobaro_in('missed_handling', 'mobaro_missed_approved_values') }}) as missed_approved,
    count(*) filter (where is_missed and {{ mobaro_in('missed_handling', 'mobaro_missed_rescheduled_values') }}) as missed_rescheduled,
    count(*) filter (where is_invalidated) as invalidated,
    case when {{ mobaro_in('results.schedule_kind', 'mobaro_compliance_schedule_kinds') }} then
        round(
            100.0 * count(*) filter (where is_completed)
            / nullif(count(*) filter (where is_completed or is_missed), 0),
            2
        )
    end as compliance_pct,
    round(avg(score) filter (where is_completed), 4) as mean_score,
    coalesce(bool_and({{ mobaro_is_final('days.day_ends_at', 'status') }}), false) as is_final
from results
left join {{ ref('int_location_days') }} as days
    on days.account = results.account
    and days.location_id = results.location_id
    and days.local_date = results.result_date
left join {{ ref('int_table_final_through') }} as status
    on status.table_name = 'results'
group by 1, 2, 3, 4, 5
