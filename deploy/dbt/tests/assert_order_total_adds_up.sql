-- An order's total is subtotal - discount + tax + shipping.
select order_id, subtotal, discount, tax, shipping, order_total
from {{ ref('stg_orders') }}
where order_total <> subtotal - discount + tax + shipping
