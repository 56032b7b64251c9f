{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id',
    dist='HASH(order_id)',
    on_schema_change='fail'
) }}

{#- One row per order line, with the order's keys, status and payment status, and the line's
    share of everything the order adds up to: its discount, tax and shipping, its gross amount
    (so that summing an order's lines gives its total) and its net revenue (so that summing
    lines gives fct_orders.net_revenue). Shares are in proportion to the line amounts,
    allocated cumulatively (each line gets the rounded running share minus the rounded running
    share before it), so the cents always add up. Incremental: each run recomputes the lines
    of every order fct_orders recomputed (delete+insert on order_id). -#}

with orders as (
    select *
    from {{ ref('fct_orders') }}
    {% if is_incremental() %}
    where source_loaded_at > {{ watermark() }}
    {% endif %}
),

lines as (
    select
        items.order_id,
        items.line_number,
        items.product_id,
        items.quantity,
        items.unit_price,
        items.line_total,
        orders.customer_key,
        orders.order_date_key,
        orders.order_date,
        orders.placed_at,
        orders.channel,
        orders.currency,
        orders.line_count,
        orders.order_status,
        orders.payment_status,
        orders.payment_method,
        orders.reporting_currency,
        orders.source_loaded_at,
        orders.subtotal,
        orders.discount,
        orders.tax,
        orders.shipping,
        orders.order_total,
        orders.net_revenue as order_net_revenue,
        orders.net_revenue_reporting as order_net_revenue_reporting,
        sum(items.line_total) over (
            partition by items.order_id order by items.line_number rows between unbounded preceding and current row
        ) as running_amount
    from {{ ref('stg_order_items') }} as items
    inner join orders
        on items.event_id = orders.placed_event_id
),

running as (
    {#- Each share up to and including this line; the order's last line reaches the whole. -#}
    select
        *,
        round(discount * running_amount / subtotal, 2) as discount_upto,
        round(tax * running_amount / subtotal, 2) as tax_upto,
        round(shipping * running_amount / subtotal, 2) as shipping_upto,
        round(order_net_revenue * running_amount / subtotal, 2) as net_revenue_upto,
        round(order_net_revenue_reporting * running_amount / subtotal, 2) as net_revenue_reporting_upto
    from lines
),

shares as (
    select
        *,
        cast(discount_upto - coalesce(lag(discount_upto) over (partition by order_id order by line_number), 0)
            as decimal(12, 2)) as discount_amount,
        cast(tax_upto - coalesce(lag(tax_upto) over (partition by order_id order by line_number), 0)
            as decimal(12, 2)) as tax_amount,
        cast(shipping_upto - coalesce(lag(shipping_upto) over (partition by order_id order by line_number), 0)
            as decimal(12, 2)) as shipping_amount,
        cast(net_revenue_upto - coalesce(lag(net_revenue_upto) over (partition by order_id order by line_number), 0)
            as decimal(12, 2)) as net_revenue,
        cast(net_revenue_reporting_upto
            - coalesce(lag(net_revenue_reporting_upto) over (partition by order_id order by line_number), 0)
            as decimal(14, 2)) as net_revenue_reporting
    from running
)

select
    order_id,
    line_number,
    customer_key,
    product_id as product_key,
    order_date_key,
    order_date,
    placed_at as ordered_at,
    channel,
    currency,
    quantity,
    unit_price,
    line_total as line_amount,
    discount_amount,
    tax_amount,
    shipping_amount,
    cast(line_total - discount_amount + tax_amount + shipping_amount as decimal(12, 2)) as gross_amount,
    net_revenue,
    reporting_currency,
    net_revenue_reporting,
    line_count as order_line_count,
    order_status,
    payment_status,
    payment_method,
    source_loaded_at
from shares
