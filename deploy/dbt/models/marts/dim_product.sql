{{ config(dist='REPLICATE') }}

{#- One row per product: its latest catalogue entry (current price) and when it first
    appeared. A product sold before its catalogue event was loaded is an inferred member
    (is_inferred = 1) until that event arrives. Rebuilt in full: the catalogue is small. -#}
with ranked as (
    select
        *,
        row_number() over (partition by product_id order by event_time desc, event_id desc) as recency,
        min(event_time) over (partition by product_id) as first_published_at
    from {{ ref('stg_products') }}
),

known as (
    select * from ranked where recency = 1
),

referenced as (
    select distinct product_id from {{ ref('stg_order_items') }}
)

select
    product_id as product_key,
    product_id,
    sku,
    product_name,
    category_id,
    category_name,
    unit_price as current_unit_price,
    currency,
    first_published_at,
    0 as is_inferred
from known

union all

select
    referenced.product_id as product_key,
    referenced.product_id,
    null as sku,
    null as product_name,
    null as category_id,
    null as category_name,
    null as current_unit_price,
    null as currency,
    null as first_published_at,
    1 as is_inferred
from referenced
left join known
    on known.product_id = referenced.product_id
where known.product_id is null
