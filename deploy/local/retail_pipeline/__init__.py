"""The local pipeline: the simulator's hourly Avro files into a DuckDB warehouse with the same
`raw` tables as Synapse, the dbt models on it, and the dashboards on the marts (a page that
opens from the file system, and a packaged Tableau workbook). `deploy/local/pipeline` runs it."""
