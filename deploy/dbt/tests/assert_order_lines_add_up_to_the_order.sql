-- An order's lines carry all of it: their discount, tax and shipping shares, gross amounts
-- and net revenue shares sum to the order's figures, to the cent.
with lines as (
    select
        order_id,
        count(*) as lines,
        sum(discount_amount) as discount,
        sum(tax_amount) as tax,
        sum(shipping_amount) as shipping,
        sum(gross_amount) as gross,
        sum(net_revenue) as net_revenue,
        sum(net_revenue_reporting) as net_revenue_reporting
    from {{ ref('fct_sales') }}
    group by order_id
)

select orders.order_id
from {{ ref('fct_orders') }} as orders
left join lines on lines.order_id = orders.order_id
where lines.order_id is null
   or lines.lines <> orders.line_count
   or lines.discount <> orders.discount
   or lines.tax <> orders.tax
   or lines.shipping <> orders.shipping
   or lines.gross <> orders.order_total
   or lines.net_revenue <> orders.net_revenue
   or lines.net_revenue_reporting <> orders.net_revenue_reporting
