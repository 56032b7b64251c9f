{{ config(dist='HASH(customer_key)') }}

{#- Type 2 history of every customer: one row per version, from the sign-up and from each
    customer_updated, valid from its event_time until the next version's (valid_to null while
    current). A customer_deleted closes the last version, and erases the customer from every
    version: personal fields null, is_erased = 1 (the right to erasure reaches the history
    too). Derived in full from the events each run, so a late-loaded change lands where it
    belongs in time; every change is an event, so no change between two runs is missed. -#}

with events as (
    select
        *,
        lead(event_time) over (partition by customer_id order by event_time, event_id) as next_event_at
    from {{ ref('stg_customers') }}
),

erasures as (
    select customer_id, min(event_time) as erased_at
    from events
    where event_type = 'customer_deleted'
    group by customer_id
),

versions as (
    select
        events.*,
        row_number() over (partition by events.customer_id order by events.event_time, events.event_id) as version,
        erasures.erased_at
    from events
    left join erasures
        on erasures.customer_id = events.customer_id
    where events.event_type <> 'customer_deleted'
)

select
    event_id as customer_version_key,
    customer_id as customer_key,
    customer_id,
    version,
    event_type as change_type,
    changed_fields,
    event_time as valid_from,
    next_event_at as valid_to,
    case when next_event_at is null then 1 else 0 end as is_current,
    case when erased_at is null then first_name end as first_name,
    case when erased_at is null then last_name end as last_name,
    case when erased_at is null then email end as email,
    case when erased_at is null then phone end as phone,
    case when erased_at is null then street_address end as street_address,
    case when erased_at is null then city end as city,
    case when erased_at is null then region end as region,
    case when erased_at is null then postal_code end as postal_code,
    case when erased_at is null then country_code end as country_code,
    case when erased_at is null then marketing_consent end as marketing_consent,
    signup_channel,
    signed_up_at,
    case when erased_at is null then 0 else 1 end as is_erased,
    erased_at,
    loaded_at as source_loaded_at
from versions
