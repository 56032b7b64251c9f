with deliveries as (
    {{ first_delivery(source('raw', 'customers'), 'event_id') }}
)

select
    event_id,
    event_type,
    customer_id,
    first_name,
    last_name,
    email,
    phone,
    street_address,
    city,
    region,
    postal_code,
    country as country_code,
    marketing_consent,
    coalesce(changed_fields, '') as changed_fields,
    signup_channel,
    cast(signup_time as {{ dbt.type_timestamp() }}) as signed_up_at,
    cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
    loaded_at
from deliveries
