{{ config(dist='ROUND_ROBIN') }}

{#- Revenue by category, per day, channel and currency: the lines sold, the units, the orders
    with a line in the category, and the lines' net revenue shares (fct_sales), in the order's
    currency and in the reporting currency. Rebuilt in full each run. -#}

select
    sales.order_date,
    sales.order_date_key,
    coalesce(products.category_name, 'Unknown') as category_name,
    sales.channel,
    sales.currency,
    count(*) as lines,
    sum(sales.quantity) as units,
    count(distinct sales.order_id) as orders,
    sum(sales.line_amount) as line_amount,
    sum(sales.gross_amount) as gross_amount,
    sum(sales.net_revenue) as net_revenue,
    sum(sales.net_revenue_reporting) as net_revenue_reporting
from {{ ref('fct_sales') }} as sales
left join {{ ref('dim_product') }} as products
    on products.product_key = sales.product_key
group by
    sales.order_date,
    sales.order_date_key,
    coalesce(products.category_name, 'Unknown'),
    sales.channel,
    sales.currency
