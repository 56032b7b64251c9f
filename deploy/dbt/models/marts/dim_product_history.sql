{{ config(dist='REPLICATE') }}

{#- Type 2 history of every product's catalogue entry: one row per version, from its
    publication and from each product_repriced, valid from its event_time until the next
    version's (valid_to null while current). A product_discontinued closes the last version
    (discontinued_at, replaced_by). Derived in full from the events each run: the catalogue is
    small. -#}

with events as (
    select
        *,
        lead(event_time) over (partition by product_id order by event_time, event_id) as next_event_at
    from {{ ref('stg_products') }}
),

discontinuations as (
    select product_id, min(event_time) as discontinued_at, max(replaced_by) as replaced_by
    from events
    where event_type = 'product_discontinued'
    group by product_id
)

select
    events.event_id as product_version_key,
    events.product_id as product_key,
    events.product_id,
    row_number() over (partition by events.product_id order by events.event_time, events.event_id) as version,
    events.event_type as change_type,
    events.event_time as valid_from,
    events.next_event_at as valid_to,
    case when events.next_event_at is null then 1 else 0 end as is_current,
    events.sku,
    events.product_name,
    events.category_id,
    events.category_name,
    events.unit_price,
    events.currency,
    discontinuations.discontinued_at,
    discontinuations.replaced_by
from events
left join discontinuations
    on discontinuations.product_id = events.product_id
where events.event_type <> 'product_discontinued'
