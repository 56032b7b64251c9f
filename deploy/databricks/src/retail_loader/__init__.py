"""Loads the retail simulator's Kafka topics into the `raw` schema of a Synapse dedicated SQL
pool: a Databricks Structured Streaming job, run hourly (`job.main`), whose `foreachBatch`
(`loader.load_batch`) decodes, stages and swaps each micro-batch in idempotently."""
