{#- The first delivery of each key: the stream is at-least-once, so the same event can be
    loaded more than once (a resent event, a replayed batch). Plain row_number() in a
    subquery: QUALIFY is not T-SQL. -#}
{% macro first_delivery(relation, key) %}
select *
from (
    select
        *,
        row_number() over (
            partition by {{ key }}
            order by loaded_at, kafka_topic, kafka_partition, kafka_offset
        ) as delivery_rank
    from {{ relation }}
) as deliveries
where delivery_rank = 1
{% endmacro %}
