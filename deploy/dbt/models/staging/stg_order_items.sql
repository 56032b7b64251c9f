{#- A line is identified by its order event and position: both are delivered together. -#}
with deliveries as (
    {{ first_delivery(source('raw', 'order_items'), 'event_id, line_number') }}
)

select
    event_id,
    order_id,
    line_number,
    product_id,
    quantity,
    unit_price,
    line_total,
    currency,
    cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
    loaded_at
from deliveries
