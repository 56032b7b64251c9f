{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id',
    dist='HASH(order_id)',
    on_schema_change='fail'
) }}

{#- One row per order placed: its amounts, its latest status and payment status, what was
    captured and refunded, and when each step of its life happened. Net revenue is
    captured − refunded: the one definition of revenue in the marts (it includes the tax and
    shipping the customer paid). Amounts also in the reporting currency (macros/currency.sql).
    Incremental: each run recomputes every order that received events or payments since the
    last (delete+insert on order_id). -#}

with placed as (
    select *
    from {{ ref('stg_orders') }}
    where event_type = 'order_placed'
    {% if is_incremental() %}
      and order_id in (
        select order_id from {{ ref('stg_orders') }}
        where loaded_at > {{ watermark() }}
        union
        select order_id from {{ ref('stg_payments') }}
        where loaded_at > {{ watermark() }}
      )
    {% endif %}
),

statuses_ranked as (
    {#- The latest event decides; events of the same millisecond go by the lifecycle's order. -#}
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
        ) as recency
    from {{ ref('stg_orders') }}
),

lifecycle as (
    select
        order_id,
        min(case when order_status = 'cancelled' then event_time end) as cancelled_at,
        min(case when order_status = 'shipped' then event_time end) as shipped_at,
        min(case when order_status = 'delivered' then event_time end) as delivered_at,
        min(case when order_status = 'returned' then event_time end) as returned_at,
        max(loaded_at) as status_loaded_at
    from {{ ref('stg_orders') }}
    group by order_id
),

payments_ranked as (
    {#- The latest payment event decides; in the same millisecond a later step wins. -#}
    select
        order_id,
        payment_status,
        payment_method,
        row_number() over (
            partition by order_id
            order by
                event_time desc,
                case payment_status
                    when 'refunded' then 4 when 'captured' then 3 when 'declined' then 2 else 1
                end desc,
                payment_id desc
        ) as recency
    from {{ ref('stg_payments') }}
),

payment_totals as (
    select
        order_id,
        sum(case when payment_status = 'captured' then amount else 0 end) as captured_amount,
        sum(case when payment_status = 'refunded' then amount else 0 end) as refunded_amount,
        count(distinct payment_id) as payment_attempts,
        min(case when payment_status = 'captured' then event_time end) as captured_at,
        max(case when payment_status = 'refunded' then event_time end) as refunded_at,
        max(loaded_at) as payments_loaded_at
    from {{ ref('stg_payments') }}
    group by order_id
),

orders as (
    select
        placed.order_id,
        placed.event_id as placed_event_id,
        placed.customer_id as customer_key,
        {{ date_key('placed.event_time') }} as order_date_key,
        cast(placed.event_time as date) as order_date,
        placed.event_time as placed_at,
        placed.channel,
        placed.currency,
        placed.line_count,
        placed.subtotal,
        placed.discount,
        placed.tax,
        placed.shipping,
        placed.order_total,
        latest_status.order_status,
        coalesce(latest_payment.payment_status, 'unpaid') as payment_status,
        latest_payment.payment_method,
        coalesce(payment_totals.payment_attempts, 0) as payment_attempts,
        coalesce(payment_totals.captured_amount, 0) as captured_amount,
        coalesce(payment_totals.refunded_amount, 0) as refunded_amount,
        lifecycle.cancelled_at,
        payment_totals.captured_at,
        lifecycle.shipped_at,
        lifecycle.delivered_at,
        lifecycle.returned_at,
        payment_totals.refunded_at,
        case
            when payment_totals.payments_loaded_at > lifecycle.status_loaded_at
                then payment_totals.payments_loaded_at
            else lifecycle.status_loaded_at
        end as source_loaded_at
    from placed
    inner join statuses_ranked as latest_status
        on latest_status.order_id = placed.order_id and latest_status.recency = 1
    inner join lifecycle
        on lifecycle.order_id = placed.order_id
    left join payments_ranked as latest_payment
        on latest_payment.order_id = placed.order_id and latest_payment.recency = 1
    left join payment_totals
        on payment_totals.order_id = placed.order_id
)

select
    order_id,
    placed_event_id,
    customer_key,
    order_date_key,
    order_date,
    placed_at,
    channel,
    currency,
    line_count,
    subtotal,
    discount,
    tax,
    shipping,
    order_total,
    order_status,
    payment_status,
    payment_method,
    payment_attempts,
    captured_amount,
    refunded_amount,
    captured_amount - refunded_amount as net_revenue,
    '{{ reporting_currency() }}' as reporting_currency,
    {{ to_reporting('order_total', 'currency') }} as order_total_reporting,
    {{ to_reporting('captured_amount', 'currency') }} as captured_amount_reporting,
    {{ to_reporting('refunded_amount', 'currency') }} as refunded_amount_reporting,
    {{ to_reporting('captured_amount - refunded_amount', 'currency') }} as net_revenue_reporting,
    cancelled_at,
    captured_at,
    shipped_at,
    delivered_at,
    returned_at,
    refunded_at,
    source_loaded_at
from orders
