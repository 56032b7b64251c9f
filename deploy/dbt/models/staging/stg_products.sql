with deliveries as (
    {{ first_delivery(source('raw', 'products'), 'event_id') }}
)

select
    event_id,
    event_type,
    product_id,
    sku,
    name as product_name,
    category_id,
    category as category_name,
    unit_price,
    currency,
    replaced_by,
    cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
    loaded_at
from deliveries
