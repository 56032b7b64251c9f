-- Every order line's amount is its quantity times its unit price.
select order_id, line_number, quantity, unit_price, line_amount
from {{ ref('fct_sales') }}
where line_amount <> quantity * unit_price
