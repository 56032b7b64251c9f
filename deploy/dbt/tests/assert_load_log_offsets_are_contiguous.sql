-- Completeness: per topic and partition, each loaded batch starts right after the previous one
-- ended, so no offsets were skipped between batches (a batch lost on its way to raw, a swap
-- that failed without failing its micro-batch, a checkpoint moved past unloaded messages).
with ranges as (
    select
        kafka_topic,
        kafka_partition,
        batch_id,
        start_offset,
        end_offset,
        lag(end_offset) over (
            partition by kafka_topic, kafka_partition order by start_offset
        ) as previous_end
    from {{ source('raw', 'load_log') }}
)

select kafka_topic, kafka_partition, batch_id, previous_end + 1 as first_missing, start_offset - 1 as last_missing
from ranges
where previous_end is not null
  and start_offset <> previous_end + 1
