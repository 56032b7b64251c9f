-- The loader's tables in the Synapse dedicated SQL pool. Generated from
-- deploy/databricks/src/retail_loader/tables.py; a test keeps the two equal.
-- Run after schemas.sql; creates the tables that do not exist yet.

-- One row per `customers` event (customer signed up, updated or erased).
IF OBJECT_ID('raw.customers') IS NULL
CREATE TABLE raw.customers (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    customer_id BIGINT NOT NULL,
    first_name NVARCHAR(100) NULL,
    last_name NVARCHAR(100) NULL,
    email NVARCHAR(320) NULL,
    phone NVARCHAR(40) NULL,
    street_address NVARCHAR(200) NULL,
    city NVARCHAR(100) NULL,
    region NVARCHAR(100) NULL,
    postal_code NVARCHAR(20) NULL,
    country NVARCHAR(2) NULL,
    signup_time DATETIME2(6) NOT NULL,
    signup_channel NVARCHAR(20) NOT NULL,
    marketing_consent BIT NULL,
    changed_fields NVARCHAR(200) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = HASH(customer_id), HEAP);

-- Staging twin of raw.customers for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.customers') IS NULL
CREATE TABLE stage.customers (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    customer_id BIGINT NOT NULL,
    first_name NVARCHAR(100) NULL,
    last_name NVARCHAR(100) NULL,
    email NVARCHAR(320) NULL,
    phone NVARCHAR(40) NULL,
    street_address NVARCHAR(200) NULL,
    city NVARCHAR(100) NULL,
    region NVARCHAR(100) NULL,
    postal_code NVARCHAR(20) NULL,
    country NVARCHAR(2) NULL,
    signup_time DATETIME2(6) NOT NULL,
    signup_channel NVARCHAR(20) NOT NULL,
    marketing_consent BIT NULL,
    changed_fields NVARCHAR(200) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.customers for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.customers') IS NULL
CREATE TABLE stage_dev.customers (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    customer_id BIGINT NOT NULL,
    first_name NVARCHAR(100) NULL,
    last_name NVARCHAR(100) NULL,
    email NVARCHAR(320) NULL,
    phone NVARCHAR(40) NULL,
    street_address NVARCHAR(200) NULL,
    city NVARCHAR(100) NULL,
    region NVARCHAR(100) NULL,
    postal_code NVARCHAR(20) NULL,
    country NVARCHAR(2) NULL,
    signup_time DATETIME2(6) NOT NULL,
    signup_channel NVARCHAR(20) NOT NULL,
    marketing_consent BIT NULL,
    changed_fields NVARCHAR(200) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- One row per `products` event (product published, repriced or discontinued).
IF OBJECT_ID('raw.products') IS NULL
CREATE TABLE raw.products (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    product_id BIGINT NOT NULL,
    sku NVARCHAR(40) NOT NULL,
    name NVARCHAR(200) NOT NULL,
    category_id INT NOT NULL,
    category NVARCHAR(100) NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    replaced_by BIGINT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.products for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.products') IS NULL
CREATE TABLE stage.products (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    product_id BIGINT NOT NULL,
    sku NVARCHAR(40) NOT NULL,
    name NVARCHAR(200) NOT NULL,
    category_id INT NOT NULL,
    category NVARCHAR(100) NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    replaced_by BIGINT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.products for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.products') IS NULL
CREATE TABLE stage_dev.products (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    product_id BIGINT NOT NULL,
    sku NVARCHAR(40) NOT NULL,
    name NVARCHAR(200) NOT NULL,
    category_id INT NOT NULL,
    category NVARCHAR(100) NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    replaced_by BIGINT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- One row per `orders` event; its lines are in `raw.order_items`.
IF OBJECT_ID('raw.orders') IS NULL
CREATE TABLE raw.orders (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    line_count INT NOT NULL,
    subtotal DECIMAL(12,2) NOT NULL,
    discount DECIMAL(12,2) NOT NULL,
    tax DECIMAL(12,2) NOT NULL,
    shipping DECIMAL(12,2) NOT NULL,
    total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    channel NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = HASH(order_id), HEAP);

-- Staging twin of raw.orders for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.orders') IS NULL
CREATE TABLE stage.orders (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    line_count INT NOT NULL,
    subtotal DECIMAL(12,2) NOT NULL,
    discount DECIMAL(12,2) NOT NULL,
    tax DECIMAL(12,2) NOT NULL,
    shipping DECIMAL(12,2) NOT NULL,
    total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    channel NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.orders for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.orders') IS NULL
CREATE TABLE stage_dev.orders (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    line_count INT NOT NULL,
    subtotal DECIMAL(12,2) NOT NULL,
    discount DECIMAL(12,2) NOT NULL,
    tax DECIMAL(12,2) NOT NULL,
    shipping DECIMAL(12,2) NOT NULL,
    total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    channel NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- One row per line of an `orders` event, distributed like `raw.orders`.
IF OBJECT_ID('raw.order_items') IS NULL
CREATE TABLE raw.order_items (
    event_id CHAR(36) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    line_number INT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity INT NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    line_total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = HASH(order_id), HEAP);

-- Staging twin of raw.order_items for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.order_items') IS NULL
CREATE TABLE stage.order_items (
    event_id CHAR(36) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    line_number INT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity INT NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    line_total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.order_items for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.order_items') IS NULL
CREATE TABLE stage_dev.order_items (
    event_id CHAR(36) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    order_id BIGINT NOT NULL,
    line_number INT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity INT NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    line_total DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- One row per `payments` event (authorised, captured or declined).
IF OBJECT_ID('raw.payments') IS NULL
CREATE TABLE raw.payments (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    payment_id BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    method NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    attempt INT NOT NULL,
    failure_reason NVARCHAR(100) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = HASH(order_id), HEAP);

-- Staging twin of raw.payments for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.payments') IS NULL
CREATE TABLE stage.payments (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    payment_id BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    method NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    attempt INT NOT NULL,
    failure_reason NVARCHAR(100) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.payments for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.payments') IS NULL
CREATE TABLE stage_dev.payments (
    event_id CHAR(36) NOT NULL,
    event_type NVARCHAR(40) NOT NULL,
    event_time DATETIME2(6) NOT NULL,
    payment_id BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    currency NVARCHAR(3) NOT NULL,
    method NVARCHAR(20) NOT NULL,
    status NVARCHAR(20) NOT NULL,
    attempt INT NOT NULL,
    failure_reason NVARCHAR(100) NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Messages that could not be decoded, kept whole (quarantine) with the reason.
IF OBJECT_ID('raw.rejected_messages') IS NULL
CREATE TABLE raw.rejected_messages (
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NULL,
    kafka_key VARBINARY(1024) NULL,
    kafka_value VARBINARY(MAX) NULL,
    reason NVARCHAR(400) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.rejected_messages for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.rejected_messages') IS NULL
CREATE TABLE stage.rejected_messages (
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NULL,
    kafka_key VARBINARY(1024) NULL,
    kafka_value VARBINARY(MAX) NULL,
    reason NVARCHAR(400) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.rejected_messages for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.rejected_messages') IS NULL
CREATE TABLE stage_dev.rejected_messages (
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset BIGINT NOT NULL,
    kafka_timestamp DATETIME2(6) NULL,
    kafka_key VARBINARY(1024) NULL,
    kafka_value VARBINARY(MAX) NULL,
    reason NVARCHAR(400) NOT NULL,
    batch_id BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- One row per topic partition per batch: the offsets loaded and how many were rejected.
IF OBJECT_ID('raw.load_log') IS NULL
CREATE TABLE raw.load_log (
    batch_id BIGINT NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.load_log for the loader writing stage: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage.load_log') IS NULL
CREATE TABLE stage.load_log (
    batch_id BIGINT NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);

-- Staging twin of raw.load_log for the loader writing stage_dev: COPY INTO lands here, emptied before each batch.
IF OBJECT_ID('stage_dev.load_log') IS NULL
CREATE TABLE stage_dev.load_log (
    batch_id BIGINT NOT NULL,
    kafka_topic NVARCHAR(249) NOT NULL,
    kafka_partition INT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
)
WITH (DISTRIBUTION = ROUND_ROBIN, HEAP);
