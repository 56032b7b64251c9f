with deliveries as (
    {{ first_delivery(source('raw', 'payments'), 'event_id') }}
)

select
    event_id,
    event_type,
    payment_id,
    order_id,
    customer_id,
    status as payment_status,
    method as payment_method,
    amount,
    currency,
    attempt,
    failure_reason,
    cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
    loaded_at
from deliveries
