{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id',
    dist='HASH(order_id)',
    on_schema_change='fail'
) }}

{#- One row per order line, with the order's customer, product and date keys, its amounts,
    and the order's latest status and payment status. Incremental: each run recomputes every order
    that received lines or payments since the last run (delete+insert on order_id), so the
    payment status stays current. -#}

with placed as (
    select *
    from {{ ref('stg_orders') }}
    where event_type = 'order_placed'
),

{% if is_incremental() %}
changed_orders as (
    select order_id from {{ ref('stg_orders') }}
    where loaded_at > (select max(source_loaded_at) from {{ this }})
    union
    select order_id from {{ ref('stg_payments') }}
    where loaded_at > (select max(source_loaded_at) from {{ this }})
),
{% endif %}

payments_ranked as (
    select
        order_id,
        payment_status,
        payment_method,
        loaded_at,
        row_number() over (
            partition by order_id
            order by
                event_time desc,
                case payment_status
                    when 'refunded' then 4 when 'captured' then 3 when 'declined' then 2 else 1
                end desc,
                payment_id desc
        ) as recency,
        max(loaded_at) over (partition by order_id) as payments_loaded_at
    from {{ ref('stg_payments') }}
),

latest_payment as (
    select order_id, payment_status, payment_method, payments_loaded_at
    from payments_ranked
    where recency = 1
),

statuses_ranked as (
    select
        order_id,
        order_status,
        row_number() over (
            partition by order_id
            order by
                event_time desc,
                case order_status
                    when 'returned' then 5 when 'delivered' then 4 when 'shipped' then 3
                    when 'cancelled' then 2 else 1
                end desc
        ) as recency,
        max(loaded_at) over (partition by order_id) as status_loaded_at
    from {{ ref('stg_orders') }}
),

latest_status as (
    select order_id, order_status, status_loaded_at
    from statuses_ranked
    where recency = 1
)

select
    items.order_id,
    items.line_number,
    placed.customer_id as customer_key,
    items.product_id as product_key,
    {{ date_key('placed.event_time') }} as order_date_key,
    cast(placed.event_time as date) as order_date,
    placed.event_time as ordered_at,
    placed.channel,
    placed.currency,
    items.quantity,
    items.unit_price,
    items.line_total as line_amount,
    placed.line_count as order_line_count,
    placed.order_total,
    latest_status.order_status,
    coalesce(latest_payment.payment_status, 'unpaid') as payment_status,
    latest_payment.payment_method,
    case
        when latest_payment.payments_loaded_at > latest_status.status_loaded_at
            then latest_payment.payments_loaded_at
        else latest_status.status_loaded_at
    end as source_loaded_at
from {{ ref('stg_order_items') }} as items
inner join placed
    on items.event_id = placed.event_id
inner join latest_status
    on latest_status.order_id = placed.order_id
left join latest_payment
    on latest_payment.order_id = placed.order_id
{% if is_incremental() %}
where placed.order_id in (select order_id from changed_orders)
{% endif %}
