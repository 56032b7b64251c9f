-- A captured payment takes exactly its order's total, in its currency.
with orders as (
    select distinct order_id, order_total, currency
    from {{ ref('fct_sales') }}
)

select payments.payment_event_key, payments.order_id, payments.amount, orders.order_total
from {{ ref('fct_payments') }} as payments
inner join orders on orders.order_id = payments.order_id
where payments.payment_status = 'captured'
  and (payments.amount <> orders.order_total or payments.currency <> orders.currency)
