{#- The rows of `relation`, one per event_id: copies of one event (a table
    written before the sink deduplicated, or by another writer) count once,
    the fetched copy first, then the latest fetch. Rows written before
    accounts existed (a null account) are the default account's. -#}
{% macro mobaro_one_row_per_event(relation) %}
    select * exclude (copy_rank) replace (coalesce(account, '{{ var("mobaro_default_account", "default") }}') as account)
    from (
        select
            *,
            row_number() over (
                partition by event_id
                order by case when status = 'found' then 0 else 1 end, fetched_at desc nulls last
            ) as copy_rank
        from {{ relation }}
    ) as copies
    where copy_rank = 1
{% endmacro %}

{#- The latest row of each object of a staging `relation` (by event_at,
    then the latest fetch), among the rows `condition` keeps. -#}
{% macro mobaro_latest_per_object(relation, id_column, condition='true') %}
    select * exclude (recency)
    from (
        select
            *,
            row_number() over (
                partition by account, {{ id_column }} order by event_at desc, fetched_at desc nulls last
            ) as recency
        from {{ relation }}
        where {{ condition }}
    ) as ranked
    where recency = 1
{% endmacro %}

{#- The current state of each object of a staging model (one row per
    event): its latest event decides whether it is deleted, its latest
    fetched record gives its fields (a later event whose fetch failed does
    not blank it). -#}
{% macro mobaro_current_state(relation, id_column) %}
-- The staging view is read once (its scan and deduplication are the cost).
with source_rows as materialized (
    select * from {{ relation }}
),

latest_event as (
    select account, {{ id_column }}, event_kind as last_event, fetch_status as last_status, event_at as last_event_at
    from ({{ mobaro_latest_per_object('source_rows', id_column) }}) as latest
),

latest_record as (
    {{ mobaro_latest_per_object('source_rows', id_column, "fetch_status = 'found'") }}
)

select
    latest_event.account,
    latest_event.{{ id_column }},
    latest_event.last_event,
    latest_event.last_event_at,
    latest_event.last_event = 'Deleted' or latest_event.last_status = 'not_found' as is_deleted,
    latest_record.fetched_at as record_fetched_at,
    latest_record.* exclude (account, {{ id_column }}, event_id, event_kind, event_at, received_at, fetched_at, fetch_status)
from latest_event
left join latest_record
    on latest_record.account = latest_event.account
    and latest_record.{{ id_column }} = latest_event.{{ id_column }}
{% endmacro %}

{#- The moment "open", "overdue" and open downtimes are judged at. -#}
{% macro mobaro_as_of() %}
    {%- if var('mobaro_as_of') -%}
        cast('{{ var("mobaro_as_of") }}' as timestamp with time zone)
    {%- else -%}
        current_timestamp
    {%- endif -%}
{% endmacro %}

{#- `column in (values of the list variable name)`; false for an empty list. -#}
{% macro mobaro_in(column, list_var) %}
    {%- set values = var(list_var) -%}
    {%- if values | length == 0 -%}
        false
    {%- else -%}
        coalesce({{ column }} in ({% for value in values %}'{{ value | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %}), false)
    {%- endif -%}
{% endmacro %}

{#- The text at JSON path variable `path_var` of a record. -#}
{% macro mobaro_json_text(column, path_var) %}
    json_extract_string({{ column }}, '{{ var(path_var) }}')
{%- endmacro %}

{#- Fails for every value of `column_name` that more than one row of an
    account holds: ids are unique within an account, and two accounts may
    use one id. -#}
{% test unique_per_account(model, column_name) %}
    select account, {{ column_name }}, count(*) as copies
    from {{ model }}
    where {{ column_name }} is not null
    group by 1, 2
    having count(*) > 1
{% endtest %}

{#- Fails for every combination of `combination_of_columns` that more than
    one row holds: a model's grain. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as copies
    from {{ model }}
    group by all
    having count(*) > 1
{% endtest %}

{#- One row per version of each object of a staging model (one row per
    event): a version starts with an event whose fetched record differs
    from the one before (or with a deletion) and lasts until the next one
    (valid_to null: the current version). Rebuilt whole on every run, so it
    has no incremental drift and follows erasures. -#}
{% macro mobaro_history(relation, id_column) %}
with ordered as (
    select
        *,
        fetch_status <> 'found' as is_deletion,
        lag(record_json) over versions as previous_record_json,
        lag(fetch_status) over versions as previous_status
    from {{ relation }}
    where fetch_status = 'found' or event_kind = 'Deleted' or fetch_status in ('deleted', 'not_found')
    window versions as (partition by account, {{ id_column }} order by event_at, fetched_at nulls first, event_id)
),

changes as (
    select * exclude (previous_record_json, previous_status)
    from ordered
    where previous_status is null
        or (is_deletion and previous_status = 'found')
        or (not is_deletion and (previous_status <> 'found' or record_json is distinct from previous_record_json))
),

spans as (
    select
        *,
        event_at as valid_from,
        lead(event_at) over versions as valid_to
    from changes
    window versions as (partition by account, {{ id_column }} order by event_at, fetched_at nulls first, event_id)
)

select *, valid_to is null as is_current
from spans
{% endmacro %}

{#- Minutes two overlapping intervals share (callers join on the overlap). -#}
{% macro mobaro_overlap_minutes(start_a, end_a, start_b, end_b) -%}
    date_diff('millisecond', greatest({{ start_a }}, {{ start_b }}), least({{ end_a }}, {{ end_b }})) / 60000.0
{%- endmacro %}

{#- Whether a local day ending at `day_ends_at` is final by what its
    table publishes (`status`, a row of int_table_final_through joined on
    the table's name): compaction has closed the UTC day the local day ends
    in, and its grace has passed by mobaro_as_of. False while the table
    publishes no closed day. -#}
{% macro mobaro_is_final(day_ends_at, status) -%}
    coalesce(
        {{ day_ends_at }} <= cast({{ status }}.final_through + 1 as timestamp with time zone)
        and {{ day_ends_at }} + to_milliseconds(cast({{ status }}.compaction_grace_hours * 3600000 as bigint)) <= {{ mobaro_as_of() }},
        false
    )
{%- endmacro %}
