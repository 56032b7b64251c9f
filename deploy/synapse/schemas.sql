-- The loader's two schemas in the Synapse dedicated SQL pool. Run once, before raw_tables.sql.
-- raw:   what the loader writes, one table per topic entity, plus quarantine and load log.
-- stage: the per-batch landing tables COPY INTO fills (emptied before each batch).
-- CREATE SCHEMA must be the only statement of its batch (Msg 111): each ends with GO, the
-- batch separator of sqlcmd, SSMS and Azure Data Studio.
CREATE SCHEMA raw;
GO
CREATE SCHEMA stage;
GO
