{{ config(dist='HASH(customer_key)') }}

{#- One row per customer: their first and last order, how many orders they placed, and their
    net revenue (captured − refunded) in the reporting currency, ranked. The source of the
    dashboards' top customers. An erased customer keeps their figures, without a name or a
    place. Rebuilt in full each run (one row per customer). -#}

with orders as (
    select
        customer_key,
        min(placed_at) as first_order_at,
        max(placed_at) as last_order_at,
        count(*) as orders,
        sum(order_total_reporting) as order_total_reporting,
        sum(net_revenue_reporting) as net_revenue_reporting
    from {{ ref('fct_orders') }}
    group by customer_key
)

select
    customers.customer_key,
    customers.first_name,
    customers.last_name,
    case
        when customers.first_name is not null
            then {{ dbt.concat(['customers.first_name', "' '", 'customers.last_name']) }}
    end as customer_name,
    customers.email,
    customers.city,
    customers.region,
    customers.country_code,
    customers.signed_up_at,
    customers.is_erased,
    customers.is_inferred,
    orders.first_order_at,
    orders.last_order_at,
    coalesce(orders.orders, 0) as orders,
    coalesce(orders.order_total_reporting, 0) as order_total_reporting,
    coalesce(orders.net_revenue_reporting, 0) as net_revenue_reporting,
    rank() over (order by coalesce(orders.net_revenue_reporting, 0) desc) as revenue_rank
from {{ ref('dim_customer') }} as customers
left join orders
    on orders.customer_key = customers.customer_key
