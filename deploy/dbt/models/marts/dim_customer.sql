{{ config(dist='HASH(customer_key)') }}

{#- One row per customer: their current version (dim_customer_history), or, once erased, a
    row without personal data (is_erased = 1). An order or payment can be loaded before its
    customer's sign-up (topics and partitions are read independently): such a customer
    appears as an inferred member (is_inferred = 1, attributes null) until the sign-up
    arrives. Rebuilt in full each run, so inferred rows are replaced. -#}
with latest as (
    select
        *,
        row_number() over (partition by customer_id order by valid_from desc, customer_version_key desc) as recency
    from {{ ref('dim_customer_history') }}
),

known as (
    select * from latest where recency = 1
),

referenced as (
    select customer_id from {{ ref('stg_orders') }}
    union
    select customer_id from {{ ref('stg_payments') }}
)

select
    customer_id as customer_key,
    customer_id,
    first_name,
    last_name,
    email,
    phone,
    street_address,
    city,
    region,
    postal_code,
    country_code,
    marketing_consent,
    signup_channel,
    signed_up_at,
    version as versions,
    valid_from as changed_at,
    is_erased,
    erased_at,
    0 as is_inferred
from known

union all

select
    referenced.customer_id as customer_key,
    referenced.customer_id,
    null as first_name,
    null as last_name,
    null as email,
    null as phone,
    null as street_address,
    null as city,
    null as region,
    null as postal_code,
    null as country_code,
    null as marketing_consent,
    null as signup_channel,
    null as signed_up_at,
    null as versions,
    null as changed_at,
    0 as is_erased,
    null as erased_at,
    1 as is_inferred
from referenced
left join known
    on known.customer_id = referenced.customer_id
where known.customer_id is null
