{{ config(dist='REPLICATE') }}

{#- One row per product: its latest catalogue entry (the current price, or the last one of a
    discontinued product), when it first appeared and when it was discontinued. A product
    sold before its catalogue event was loaded is an inferred member (is_inferred = 1) until
    that event arrives. Rebuilt in full: the catalogue is small. -#}
with ranked as (
    select
        *,
        row_number() over (partition by product_id order by valid_from desc, product_version_key desc) as recency,
        min(valid_from) over (partition by product_id) as first_published_at
    from {{ ref('dim_product_history') }}
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
    discontinued_at,
    replaced_by,
    case when discontinued_at is null then 0 else 1 end as is_discontinued,
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
    null as discontinued_at,
    null as replaced_by,
    0 as is_discontinued,
    1 as is_inferred
from referenced
left join known
    on known.product_id = referenced.product_id
where known.product_id is null
