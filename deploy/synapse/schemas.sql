-- The loader's schemas in the Synapse dedicated SQL pool. Run once, before raw_tables.sql.
-- raw:       what the loader writes, one table per topic entity, plus quarantine and load log.
-- stage:     the per-batch landing tables COPY INTO fills (emptied before each batch), for the
--            bundle's prod target; stage_dev the same for its dev target, so that two targets
--            loading one pool never empty or read each other's stage tables.
-- CREATE SCHEMA must be the only statement of its batch (Msg 111): each ends with GO, the
-- batch separator of sqlcmd, SSMS and Azure Data Studio.
CREATE SCHEMA raw;
GO
CREATE SCHEMA stage;
GO
CREATE SCHEMA stage_dev;
GO
