-- depends_on: {{ ref('stg_customers') }}
-- depends_on: {{ ref('stg_products') }}
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
    share before it), so the cents always add up. The customer and the product as they were
    when the order was placed: the customer's version in force then (customer_version_key, in
    dim_customer_history: their region, say, before a move) and the product's catalogue price
    then. Incremental: each run recomputes the lines of every order fct_orders recomputed, and
    of every order placed after a customer or catalogue event of its customer or products that
    was loaded since (a late change moves the order to another version) (delete+insert on
    order_id). -#}

{% if is_incremental() %}
with late_customers as (
    select customer_id, min(event_time) as since
    from {{ ref('stg_customers') }}
    where loaded_at > {{ watermark() }}
    group by customer_id
),

late_products as (
    select product_id, min(event_time) as since
    from {{ ref('stg_products') }}
    where loaded_at > {{ watermark() }}
    group by product_id
),

orders as (
    select *
    from {{ ref('fct_orders') }} as orders
    where orders.source_loaded_at > {{ watermark() }}
        or orders.order_id in (
            select fct.order_id
            from {{ ref('fct_orders') }} as fct
            inner join late_customers
                on late_customers.customer_id = fct.customer_key and fct.placed_at >= late_customers.since
        )
        or orders.order_id in (
            select items.order_id
            from {{ ref('stg_order_items') }} as items
            inner join late_products
                on late_products.product_id = items.product_id and items.event_time >= late_products.since
        )
),
{% else %}
with orders as (
    select * from {{ ref('fct_orders') }}
),
{% endif %}

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
        customers.customer_version_key,
        products.unit_price as catalogue_unit_price,
        sum(items.line_total) over (
            partition by items.order_id order by items.line_number rows between unbounded preceding and current row
        ) as running_amount
    from {{ ref('stg_order_items') }} as items
    inner join orders
        on items.event_id = orders.placed_event_id
    left join {{ ref('dim_customer_history') }} as customers
        on customers.customer_key = orders.customer_key
        and customers.valid_from <= orders.placed_at
        and (customers.valid_to is null or orders.placed_at < customers.valid_to)
    left join {{ ref('dim_product_history') }} as products
        on products.product_key = items.product_id
        and products.valid_from <= orders.placed_at
        and (products.valid_to is null or orders.placed_at < products.valid_to)
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
    customer_version_key,
    product_id as product_key,
    order_date_key,
    order_date,
    placed_at as ordered_at,
    channel,
    currency,
    quantity,
    unit_price,
    catalogue_unit_price,
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
