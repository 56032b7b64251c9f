{{ config(materialized='view') }}

{#- The dashboards' one source (the local page and the Tableau workbooks): every order line
    with the order's and the line's figures, the customer's name (as it is now) and place (as
    it was when the order was placed), and the product's category. An erased customer shows
    as 'Erased'. A view, so a customer's sign-up loaded after their order shows at once. -#}

select
    sales.order_id,
    sales.line_number,
    sales.order_date,
    sales.ordered_at,
    sales.channel,
    sales.currency,
    sales.customer_key,
    case
        when customers.is_erased = 1 then 'Erased'
        else coalesce(customers.customer_name, 'Unknown')
    end as customer_name,
    case
        when customers.is_erased = 1 then 'Erased'
        else coalesce(versions.country_code, 'Unknown')
    end as country_code,
    case
        when customers.is_erased = 1 then 'Erased'
        else coalesce(versions.region, 'Unknown')
    end as region,
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
left join {{ ref('dim_customer_history') }} as versions
    on versions.customer_version_key = sales.customer_version_key
left join {{ ref('dim_product') }} as products
    on products.product_key = sales.product_key
