with deliveries as (
    {{ first_delivery(source('raw', 'orders'), 'event_id') }}
)

select
    event_id,
    event_type,
    order_id,
    customer_id,
    status as order_status,
    channel,
    currency,
    line_count,
    subtotal,
    discount,
    tax,
    shipping,
    total as order_total,
    cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
    loaded_at
from deliveries
