{{ config(materialized='view') }}

{#- The dashboards' one source (the local page and the Tableau workbooks): every order line
    with the order's and the line's figures, the customer's name and place, and the product's
    category. A view, so a customer's sign-up loaded after their order shows at once. -#}

select
    sales.order_id,
    sales.line_number,
    sales.order_date,
    sales.ordered_at,
    sales.channel,
    sales.currency,
    sales.customer_key,
    coalesce(customers.customer_name, 'Unknown') as customer_name,
    coalesce(customers.country_code, 'Unknown') as country_code,
    coalesce(customers.region, 'Unknown') as region,
    sales.product_key,
    coalesce(products.product_name, 'Unknown') as product_name,
    coalesce(products.category_name, 'Unknown') as category_name,
    sales.quantity,
    sales.line_amount,
    sales.gross_amount,
    sales.net_revenue,
    sales.reporting_currency,
    sales.net_revenue_reporting,
    sales.order_status,
    sales.payment_status
from {{ ref('fct_sales') }} as sales
left join {{ ref('customer_revenue') }} as customers
    on customers.customer_key = sales.customer_key
left join {{ ref('dim_product') }} as products
    on products.product_key = sales.product_key
