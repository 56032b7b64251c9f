-- The statements the loader runs in Synapse for one micro-batch: batch 42, which read
-- offsets 1200-1850 and 1100-1790 of orders partitions 0 and 1 and 2400-3710 of payments
-- partition 0. COPY INTO names the files the batch's write committed. The loader runs
-- each statement alone and the swap with autocommit off, committing after its last
-- statement. Rendered by `python -m retail_loader.render`; a test keeps it current.
TRUNCATE TABLE stage.customers;
TRUNCATE TABLE stage.products;
TRUNCATE TABLE stage.orders;
TRUNCATE TABLE stage.order_items;
TRUNCATE TABLE stage.payments;
TRUNCATE TABLE stage.rejected_messages;
TRUNCATE TABLE stage.load_log;
COPY INTO stage.orders
FROM 'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/orders/part-00000-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet',
     'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/orders/part-00001-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet'
WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF');
COPY INTO stage.order_items
FROM 'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/order_items/part-00000-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet',
     'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/order_items/part-00001-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet'
WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF');
COPY INTO stage.payments
FROM 'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/payments/part-00000-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet'
WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF');
COPY INTO stage.load_log
FROM 'https://retailstaging.dfs.core.windows.net/loader/staging/prod/batch=42/load_log/part-00000-7d0c1f1e-5b8a-4a47-9d3e-2c6f0a9b8e41-c000.snappy.parquet'
WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF');
SET XACT_ABORT ON;
BEGIN TRANSACTION;
DELETE FROM raw.orders
WHERE (kafka_topic = 'orders' AND kafka_partition = 0 AND kafka_offset BETWEEN 1200 AND 1850)
   OR (kafka_topic = 'orders' AND kafka_partition = 1 AND kafka_offset BETWEEN 1100 AND 1790);
INSERT INTO raw.orders (event_id, event_type, event_time, order_id, customer_id, line_count, subtotal, discount, tax, shipping, total, currency, channel, status, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at)
SELECT event_id, event_type, event_time, order_id, customer_id, line_count, subtotal, discount, tax, shipping, total, currency, channel, status, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at FROM stage.orders;
DELETE FROM raw.order_items
WHERE (kafka_topic = 'orders' AND kafka_partition = 0 AND kafka_offset BETWEEN 1200 AND 1850)
   OR (kafka_topic = 'orders' AND kafka_partition = 1 AND kafka_offset BETWEEN 1100 AND 1790);
INSERT INTO raw.order_items (event_id, event_time, order_id, line_number, product_id, quantity, unit_price, line_total, currency, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at)
SELECT event_id, event_time, order_id, line_number, product_id, quantity, unit_price, line_total, currency, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at FROM stage.order_items;
DELETE FROM raw.payments
WHERE (kafka_topic = 'payments' AND kafka_partition = 0 AND kafka_offset BETWEEN 2400 AND 3710);
INSERT INTO raw.payments (event_id, event_type, event_time, payment_id, order_id, customer_id, amount, currency, method, status, attempt, failure_reason, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at)
SELECT event_id, event_type, event_time, payment_id, order_id, customer_id, amount, currency, method, status, attempt, failure_reason, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, loaded_at FROM stage.payments;
DELETE FROM raw.rejected_messages
WHERE (kafka_topic = 'orders' AND kafka_partition = 0 AND kafka_offset BETWEEN 1200 AND 1850)
   OR (kafka_topic = 'orders' AND kafka_partition = 1 AND kafka_offset BETWEEN 1100 AND 1790)
   OR (kafka_topic = 'payments' AND kafka_partition = 0 AND kafka_offset BETWEEN 2400 AND 3710);
INSERT INTO raw.rejected_messages (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, kafka_key, kafka_value, reason, batch_id, loaded_at)
SELECT kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, kafka_key, kafka_value, reason, batch_id, loaded_at FROM stage.rejected_messages;
DELETE FROM raw.load_log
WHERE (kafka_topic = 'orders' AND kafka_partition = 0 AND start_offset BETWEEN 1200 AND 1850)
   OR (kafka_topic = 'orders' AND kafka_partition = 1 AND start_offset BETWEEN 1100 AND 1790)
   OR (kafka_topic = 'payments' AND kafka_partition = 0 AND start_offset BETWEEN 2400 AND 3710);
INSERT INTO raw.load_log (batch_id, kafka_topic, kafka_partition, start_offset, end_offset, messages, rejected, loaded_at)
SELECT batch_id, kafka_topic, kafka_partition, start_offset, end_offset, messages, rejected, loaded_at FROM stage.load_log;
COMMIT TRANSACTION;
