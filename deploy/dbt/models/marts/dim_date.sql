{{ config(dist='REPLICATE') }}

{#- One row per calendar day from var('calendar_start') up to var('calendar_end'). The day
    count is computed here rather than queried, so the model compiles without a connection. -#}
{%- set first_day = modules.datetime.date.fromisoformat(var('calendar_start')) -%}
{%- set days = (modules.datetime.date.fromisoformat(var('calendar_end')) - first_day).days -%}

with numbers as (
    {{ numbers(days) }}
),

dates as (
    select
        cast({{ dbt.dateadd('day', 'n', dbt.cast(dbt.string_literal(first_day.isoformat()), api.Column.translate_type('date'))) }} as date) as date_day
    from numbers
)

select
    {{ date_key('date_day') }} as date_key,
    date_day,
    year(date_day) as year_number,
    month(date_day) as month_number,
    {{ month_name('date_day') }} as month_name,
    day(date_day) as day_of_month,
    {{ iso_day_of_week('date_day') }} as iso_day_of_week,
    case when {{ iso_day_of_week('date_day') }} >= 6 then 1 else 0 end as is_weekend,
    cast({{ dbt.date_trunc('month', 'date_day') }} as date) as month_start
from dates
