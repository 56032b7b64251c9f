{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='payment_event_key',
    dist='HASH(order_id)',
    on_schema_change='fail'
) }}

{#- One row per payment event (an attempt authorised, captured, declined or refunded). Append-mostly:
    each run takes the events loaded since the last (delete+insert on the event id). -#}

select
    event_id as payment_event_key,
    payment_id,
    order_id,
    customer_id as customer_key,
    {{ date_key('event_time') }} as date_key,
    event_time as occurred_at,
    event_type,
    payment_status,
    payment_method,
    attempt,
    amount,
    currency,
    case when payment_status = 'captured' then amount else 0 end as captured_amount,
    case when payment_status = 'refunded' then amount else 0 end as refunded_amount,
    failure_reason,
    loaded_at as source_loaded_at
from {{ ref('stg_payments') }}
{% if is_incremental() %}
where loaded_at > {{ watermark() }}
{% endif %}
