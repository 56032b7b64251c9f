-- An order's subtotal is the sum of its line totals, and it has line_count lines.
with lines as (
    select event_id, sum(line_total) as lines_total, count(*) as lines
    from {{ ref('stg_order_items') }}
    group by event_id
)

select orders.order_id, orders.subtotal, lines.lines_total, orders.line_count, lines.lines
from {{ ref('stg_orders') }} as orders
left join lines on lines.event_id = orders.event_id
where orders.event_type = 'order_placed'
  and (lines.event_id is null or lines.lines_total <> orders.subtotal or lines.lines <> orders.line_count)
