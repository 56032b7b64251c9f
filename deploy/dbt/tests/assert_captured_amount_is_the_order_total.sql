-- A captured payment takes exactly its order's total, in its currency.
select payments.payment_event_key, payments.order_id, payments.amount, orders.order_total
from {{ ref('fct_payments') }} as payments
inner join {{ ref('fct_orders') }} as orders on orders.order_id = payments.order_id
where payments.payment_status = 'captured'
  and (payments.amount <> orders.order_total or payments.currency <> orders.currency)
