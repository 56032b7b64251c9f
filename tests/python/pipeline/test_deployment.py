"""What runs on Azure, checked here: the bundle against Databricks' own job model, the job's
settings, the wheel, and the Synapse SQL against sqlglot's T-SQL grammar."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile

import pytest
import sqlglot
import yaml
from sqlglot import exp

from conftest import ENTITIES, ROOT

from retail_loader import render
from retail_loader.job import ConfigError, arguments, event_hubs_bootstrap, kafka_options, parse_topics
from retail_loader.tables import STAGE_SCHEMAS, TABLES
from retail_loader.warehouse import https_url

DATABRICKS = ROOT / "deploy" / "databricks"
SYNAPSE = ROOT / "deploy" / "synapse"
SECRET = "Endpoint=sb://retail-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0a2V5PT0="


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load((DATABRICKS / "databricks.yml").read_text())


def test_the_job_matches_databricks_job_model(bundle):
    from databricks.bundles.jobs import Job

    job = bundle["resources"]["jobs"]["retail_raw_loader"]
    assert Job.from_dict(job).as_dict() == job, "a field of the job is unknown to the bundle schema or mistyped"
    broken = {**job, "schedul": job["schedule"]}
    with pytest.raises(Exception, match="schedul"):
        Job.from_dict(broken)


def test_the_bundle_is_complete_and_consistent(bundle):
    assert bundle["bundle"]["name"]
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert [t for t, v in bundle["targets"].items() if v.get("default")] == ["dev"]
    assert bundle["targets"]["prod"]["mode"] == "production"
    text = (DATABRICKS / "databricks.yml").read_text()
    used = set(re.findall(r"\$\{var\.([a-z_]+)\}", text))
    assert used <= set(bundle["variables"]), f"undefined variables {used - set(bundle['variables'])}"

    job = bundle["resources"]["jobs"]["retail_raw_loader"]
    schedule = job["schedule"]
    assert schedule["timezone_id"] == "UTC"
    fields = schedule["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and fields[0] == "0" and fields[1].isdigit() and fields[2] == "*", \
        "an hourly Quartz expression: second, minute, every hour"
    assert job["max_concurrent_runs"] == 1

    task, dbt_task = job["tasks"]
    assert task["task_key"] == "load_raw"
    pyproject = tomllib.loads((DATABRICKS / "pyproject.toml").read_text())
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == "retail_loader"
    target = pyproject["project"]["entry-points"]["packages"][wheel_task["entry_point"]]
    assert target == "retail_loader.job:main"
    assert task["job_cluster_key"] in {c["job_cluster_key"] for c in job["job_clusters"]}

    # The job's own argument parser accepts the parameters, variables filled in.
    defaults = {name: str(v.get("default", f"<{name}>")) for name, v in bundle["variables"].items()}
    defaults["storage_root"] = "abfss://loader@account.dfs.core.windows.net/retail"
    defaults["synapse_jdbc_url"] = "jdbc:sqlserver://ws.sql.azuresynapse.net:1433;database=pool"

    def fill(value: str) -> str:
        value = re.sub(r"\$\{var\.([a-z_]+)\}", lambda m: defaults[m.group(1)], value)
        return value.replace("${bundle.target}", "dev")

    args = arguments([fill(p) for p in wheel_task["parameters"]])
    assert args.checkpoint_location.startswith("abfss://") and args.staging_location.startswith("abfss://")
    assert args.checkpoint_location != args.staging_location
    assert args.stage_schema == defaults["stage_schema"]


def test_the_dbt_task_follows_the_load_and_can_run_the_project(bundle):
    """load → dbt build → source freshness, on a cluster whose environment gives the synapse
    profile every variable it reads, with the adapter the tests compile with."""
    job = bundle["resources"]["jobs"]["retail_raw_loader"]
    _, task = job["tasks"]
    assert task["depends_on"] == [{"task_key": "load_raw"}]
    dbt = task["dbt_task"]
    assert dbt["source"] == "GIT" and job["git_source"]["git_url"] == "${var.git_url}"
    assert (ROOT / dbt["project_directory"] / "dbt_project.yml").exists()
    profiles = (ROOT / dbt["profiles_directory"] / "profiles.yml").read_text()
    assert "synapse:" in profiles
    assert dbt["commands"] == ["dbt build --target synapse", "dbt source freshness --target synapse"]
    (library,) = task["libraries"]
    pinned = (ROOT / "tests" / "python" / "requirements-synapse.txt").read_text().split()
    assert library["pypi"]["package"] in pinned, "the job runs the adapter version the tests compile with"
    cluster = next(c for c in job["job_clusters"] if c["job_cluster_key"] == task["job_cluster_key"])
    environment = cluster["new_cluster"]["spark_env_vars"]
    synapse_profile = yaml.safe_load(profiles)["retail"]["outputs"]["synapse"]
    read = set(re.findall(r"env_var\('([A-Z_]+)'", str(synapse_profile))) | {"RETAIL_DBT_TARGET"}
    assert read <= set(environment), f"the dbt cluster lacks {read - set(environment)}"
    assert re.fullmatch(r"\{\{secrets/\$\{var\.secret_scope\}/[a-z-]+\}\}", environment["SYNAPSE_CLIENT_SECRET"]), \
        "the client secret comes from the secret scope, never the bundle"


def test_each_target_has_its_stage_schema_and_prod_alerts_on_failure(bundle):
    from databricks.bundles.jobs import Job

    targets = bundle["targets"]
    assert targets["dev"]["variables"]["stage_schema"] == "stage_dev"
    assert targets["prod"]["variables"]["stage_schema"] == "stage"
    assert set(STAGE_SCHEMAS) == {"stage", "stage_dev"}, "the Synapse DDL creates both"
    override = targets["prod"]["resources"]["jobs"]["retail_raw_loader"]
    assert override["email_notifications"]["on_failure"] == "${var.alert_emails}"
    assert bundle["variables"]["alert_emails"]["type"] == "complex"
    merged = {**bundle["resources"]["jobs"]["retail_raw_loader"], **override}
    merged["email_notifications"] = {**override["email_notifications"], "on_failure": ["ops@example.com"]}
    assert Job.from_dict(merged).as_dict() == merged


def test_the_job_refuses_a_password_in_the_jdbc_url(capsys):
    with pytest.raises(SystemExit) as raised:
        arguments(["--secret-scope", "s", "--synapse-jdbc-url", "jdbc:sqlserver://h;password=hunter2",
                   "--staging-location", "x", "--checkpoint-location", "y"])
    assert raised.value.code == 2
    assert "hunter2" not in capsys.readouterr().err


def test_event_hubs_options():
    topics = {e: f"retail.{e}" for e in ENTITIES}
    options = kafka_options(topics, connection_string=SECRET)
    assert options["kafka.bootstrap.servers"] == "retail-ns.servicebus.windows.net:9093"
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["kafka.sasl.jaas.config"] == (
        "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="$ConnectionString" password="{SECRET}";'
    )
    assert options["kafka.request.timeout.ms"] == "60000"
    assert options["kafka.session.timeout.ms"] == "30000"
    assert options["startingOffsets"] == "earliest"
    assert options["includeHeaders"] == "true"
    assert options["failOnDataLoss"] == "true"
    assert sorted(options["subscribe"].split(",")) == sorted(topics.values())
    assert kafka_options(topics, bootstrap_servers="k:9092")["kafka.bootstrap.servers"] == "k:9092"


def test_a_unity_catalog_service_credential_replaces_the_connection_string(bundle):
    """Entra ID for the loader (DBR 16.1+): the service credential's name and scope, no JAAS,
    no secret; selectable per target through the bundle's variables."""
    topics = {e: f"retail.{e}" for e in ENTITIES}
    options = kafka_options(topics, service_credential="retail-eventhubs", namespace="retail-ns")
    assert options["kafka.bootstrap.servers"] == "retail-ns.servicebus.windows.net:9093"
    assert options["databricks.serviceCredential"] == "retail-eventhubs"
    assert options["databricks.serviceCredential.scope"] == "https://retail-ns.servicebus.windows.net/.default"
    assert not any(k.startswith("kafka.sasl") or k == "kafka.security.protocol" for k in options)
    with pytest.raises(ConfigError, match="--eventhubs-namespace"):
        kafka_options(topics, service_credential="retail-eventhubs")
    with pytest.raises(ConfigError, match="not an Event Hubs namespace"):
        kafka_options(topics, service_credential="c", namespace="bad namespace")
    # The bundle passes both (empty by default: the connection string), and the job takes them.
    parameters = bundle["resources"]["jobs"]["retail_raw_loader"]["tasks"][0]["python_wheel_task"]["parameters"]
    assert "--service-credential" in parameters and "--eventhubs-namespace" in parameters
    assert bundle["variables"]["service_credential"]["default"] == ""
    base = ["--secret-scope", "s", "--synapse-jdbc-url", "jdbc:sqlserver://h", "--staging-location", "x",
            "--checkpoint-location", "y"]
    assert arguments(base + ["--service-credential", "", "--eventhubs-namespace", ""]).service_credential == ""
    chosen = arguments(base + ["--service-credential", "retail-eventhubs", "--eventhubs-namespace", "retail-ns"])
    assert (chosen.service_credential, chosen.eventhubs_namespace) == ("retail-eventhubs", "retail-ns")


@pytest.mark.parametrize("bad", [
    "SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0",
    "Endpoint=sb://retail-ns.servicebus.windows.net/;SharedAccessKey=c2VjcmV0",
    'Endpoint=sb://retail-ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=a"b',
    "Endpoint=https://retail-ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=c2VjcmV0",
])
def test_bad_connection_strings_are_refused_without_being_echoed(bad):
    with pytest.raises(ConfigError) as raised:
        event_hubs_bootstrap(bad)
    assert "c2VjcmV0" not in str(raised.value) and "SharedAccessKey=" not in str(raised.value)


def test_topics_setting():
    assert parse_topics("") == {e: e for e in ENTITIES}
    assert parse_topics("orders=shop.orders")["orders"] == "shop.orders"
    with pytest.raises(ConfigError, match="refunds"):
        parse_topics("refunds=shop.refunds")


def test_staging_locations_become_copy_urls():
    assert https_url("abfss://loader@acct.dfs.core.windows.net/staging/batch=3/orders") == \
        "https://acct.dfs.core.windows.net/loader/staging/batch=3/orders"
    with pytest.raises(ValueError, match="abfss"):
        https_url("/dbfs/tmp/staging")


def test_the_wheel_carries_the_simulators_schemas(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path),
                    str(DATABRICKS)], check=True)
    (wheel,) = tmp_path.glob("retail_loader-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for entity in ENTITIES:
            assert archive.read(f"retail_loader/schemas/{entity}.avsc") == (ROOT / "avro" / f"{entity}.avsc").read_bytes()
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "[packages]" in entry_points and "load = retail_loader.job:main" in entry_points


@pytest.mark.parametrize("name", sorted(render.FILES))
def test_synapse_files_are_current(name):
    assert (SYNAPSE / name).read_text() == render.FILES[name](), \
        f"deploy/synapse/{name} is out of date: run python -m retail_loader.render deploy/synapse"


# sqlglot knows T-SQL and Synapse's DISTRIBUTION option, but not the CLUSTERED COLUMNSTORE INDEX
# table option: that one is checked by the pattern, and swapped for HEAP before parsing.
TABLE_OPTIONS = re.compile(
    r"WITH \(DISTRIBUTION = (HASH\((?P<key>\w+)\)|ROUND_ROBIN|REPLICATE), (CLUSTERED COLUMNSTORE INDEX|HEAP)\);$")


def batches(path) -> list[list[str]]:
    """The batches of a T-SQL script (separated by lines that are `GO`), each as its statements."""
    out, lines = [], []
    for line in path.read_text().splitlines() + ["GO"]:
        if line.strip().upper() == "GO":
            text = "\n".join(lines)
            statements = [s.strip() + ";" for s in text.split(";") if s.strip()]
            if statements:
                out.append(statements)
            lines = []
        elif not line.startswith("--"):
            lines.append(line)
    return out


def statements(path) -> list[str]:
    return [statement for batch in batches(path) for statement in batch]


# T-SQL statements that must be alone in their batch (Msg 111 and its kin).
ALONE = re.compile(r"^\s*CREATE\s+(OR\s+ALTER\s+)?(SCHEMA|VIEW|PROC|PROCEDURE|FUNCTION|TRIGGER)\b", re.I)


def test_synapse_scripts_keep_tsql_batch_rules():
    for path in sorted(SYNAPSE.glob("*.sql")):
        for batch in batches(path):
            alone = [s for s in batch if ALONE.match(s)]
            assert not alone or len(batch) == 1, f"{path.name}: {alone[0][:60]} shares its batch with {len(batch) - 1} more"
    assert [len(b) for b in batches(SYNAPSE / "schemas.sql")] == [1, 1, 1]


def test_the_batch_rule_check_sees_two_schemas_in_one_batch(tmp_path):
    script = tmp_path / "two.sql"
    script.write_text("CREATE SCHEMA raw;\nCREATE SCHEMA stage;\n")
    (batch,) = batches(script)
    assert len([s for s in batch if ALONE.match(s)]) == 2


def test_synapse_ddl_is_tsql_with_every_table():
    created = {}
    for statement in statements(SYNAPSE / "raw_tables.sql"):
        options = TABLE_OPTIONS.search(statement)
        assert options, f"unexpected table options in {statement[-120:]}"
        (parsed,) = sqlglot.parse(statement.replace("CLUSTERED COLUMNSTORE INDEX", "HEAP"), read="tsql")
        assert isinstance(parsed, exp.IfBlock)
        create = parsed.find(exp.Create)
        name = f"{create.this.this.db}.{create.this.this.name}"
        columns = {c.name: c.args["kind"].sql("tsql") for c in create.this.expressions}
        if options.group("key"):
            assert columns[options.group("key")] in ("BIGINT", "INT"), "hash on an integer column"
        created[name] = columns
    for table in TABLES:
        for schema in ("raw", *STAGE_SCHEMAS):
            columns = created[f"{schema}.{table.name}"]
            assert list(columns) == table.column_names
    schemas = []
    for statement in statements(SYNAPSE / "schemas.sql"):
        created_schema = sqlglot.parse_one(statement, read="tsql")
        assert isinstance(created_schema, exp.Create)
        schemas.append(created_schema.this.sql("tsql"))
    assert schemas == ["raw", *STAGE_SCHEMAS]


def test_the_upgrade_script_is_tsql_and_reaches_the_current_tables():
    """upgrade_raw_tables.sql parses as T-SQL, adds each new column where it is missing, relaxes
    each newly nullable one, and recreates every stage twin in the current column order."""
    added, relaxed, recreated = set(), set(), {}
    for statement in statements(SYNAPSE / "upgrade_raw_tables.sql"):
        (parsed,) = sqlglot.parse(statement, read="tsql")
        text = statement.replace("\n", " ")
        if m := re.fullmatch(r"IF COL_LENGTH\('raw\.(\w+)', '(\w+)'\) IS NULL ALTER TABLE raw\.\1 ADD \2 .* NULL;", text):
            added.add((m.group(1), m.group(2)))
        elif m := re.fullmatch(r"ALTER TABLE raw\.(\w+) ALTER COLUMN (\w+) \S+ NULL;", text):
            relaxed.add((m.group(1), m.group(2)))
        elif create := parsed.find(exp.Create):
            name = f"{create.this.this.db}.{create.this.this.name}"
            recreated[name] = [c.name for c in create.this.expressions]
        else:
            assert re.fullmatch(r"IF OBJECT_ID\('(stage|stage_dev)\.\w+'\) IS NOT NULL DROP TABLE \S+;", text), text
    by_name = {t.name: t for t in TABLES}
    assert added == {(t.name, c.name) for t in TABLES for c in t.columns if c.upgrade == "add"}
    assert relaxed == {(t.name, c.name) for t in TABLES for c in t.columns if c.upgrade == "relax"}
    assert ("customers", "marketing_consent") in added and ("customers", "email") in relaxed
    for name, columns in recreated.items():
        assert name.split(".")[0] in STAGE_SCHEMAS
        assert columns == by_name[name.split(".")[1]].column_names


def test_a_warehouse_of_an_earlier_release_is_brought_up_to_date(tmp_path):
    """The local warehouse: tables as an earlier release created them (no new columns, personal
    fields NOT NULL) take the current DDL, keep their rows, and take rows with nulls by name."""
    import duckdb
    from retail_loader.tables import duckdb_ddl

    database = duckdb.connect(str(tmp_path / "old.duckdb"))
    for statement in duckdb_ddl():
        if statement.startswith("CREATE TABLE"):
            table = next(t for t in TABLES if statement.split("(")[0].endswith(f".{t.name} "))
            old = [c for c in table.columns if c.upgrade != "add"]
            columns = ", ".join(f"{c.name} {c.duckdb_type} NOT NULL" if c.upgrade == "relax" or not c.nullable
                                else f"{c.name} {c.duckdb_type}" for c in old)
            statement = statement.split("(")[0] + f"({columns})"
        elif statement.startswith("ALTER"):
            continue
        database.execute(statement)
    with pytest.raises(duckdb.ConstraintException):
        database.execute("INSERT INTO raw.customers (event_id, event_type, event_time, customer_id, signup_time, "
                         "signup_channel, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, batch_id, "
                         "loaded_at) VALUES ('e', 'customer_deleted', now(), 1, now(), 'web', 't', 0, 0, now(), 1, now())")
    old_row = ("a", "customer_signed_up", "2026-01-01", 1, "Ann", "Lee", "a@b", "1", "1 Road", "Town", "NY", "1", "US",
               "2026-01-01", "web", "t", 0, 0, "2026-01-01", 1, "2026-01-01")
    database.execute(f"INSERT INTO raw.customers VALUES ({', '.join('?' * len(old_row))})", old_row)
    for statement in duckdb_ddl():
        database.execute(statement)
    for statement in duckdb_ddl():  # a second time changes nothing
        database.execute(statement)
    database.execute("INSERT INTO raw.customers BY NAME SELECT 'e' AS event_id, 'customer_deleted' AS event_type, "
                     "now() AS event_time, 1 AS customer_id, now() AS signup_time, 'web' AS signup_channel, "
                     "'' AS changed_fields, 't' AS kafka_topic, 0 AS kafka_partition, 1 AS kafka_offset, "
                     "now() AS kafka_timestamp, 1 AS batch_id, now() AS loaded_at")
    rows = database.execute("SELECT event_type, first_name, marketing_consent FROM raw.customers ORDER BY ALL").fetchall()
    assert rows == [("customer_deleted", None, None), ("customer_signed_up", "Ann", None)]
    columns = [r[0] for r in database.execute("DESCRIBE raw.customers").fetchall()]
    assert set(columns) == set(next(t for t in TABLES if t.name == "customers").column_names)


def test_synapse_load_statements_are_tsql():
    kinds = []
    for statement in statements(SYNAPSE / "load_batch.example.sql"):
        (parsed,) = sqlglot.parse(statement, read="tsql")
        assert not isinstance(parsed, exp.Command), f"not understood: {statement[:80]}"
        kinds.append(type(parsed).__name__)
    assert kinds[:7] == ["TruncateTable"] * 7
    assert kinds.count("Copy") == 4
    assert kinds[-1] == "Commit" and "Transaction" in kinds
    assert kinds.count("Delete") == kinds.count("Insert") == 5


def test_the_maintenance_job_reorganises_every_incremental_mart(bundle):
    from databricks.bundles.jobs import Job

    from retail_loader.job import INCREMENTAL_MARTS, maintenance_statements

    job = bundle["resources"]["jobs"]["retail_marts_maintenance"]
    assert Job.from_dict(job).as_dict() == job
    (task,) = job["tasks"]
    pyproject = tomllib.loads((DATABRICKS / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["packages"][task["python_wheel_task"]["entry_point"]] == \
        "retail_loader.job:maintain"
    incremental = {p.stem for p in (ROOT / "deploy" / "dbt" / "models").rglob("*.sql")
                   if "materialized='incremental'" in p.read_text()}
    assert set(INCREMENTAL_MARTS) == incremental
    assert maintenance_statements("analytics_marts") == [
        f"ALTER INDEX ALL ON analytics_marts.{t} REORGANIZE" for t in INCREMENTAL_MARTS]
    with pytest.raises(ValueError):
        maintenance_statements("marts; DROP TABLE raw.orders")


def test_raw_tables_are_heaps_and_the_marts_columnstore():
    """Trickle-loaded raw tables stay heaps (below ~60 million rows a columnstore would be all
    delta store); the marts are columnstore (dbt_project.yml)."""
    assert {t.index for t in TABLES} == {"HEAP"}
    project = yaml.safe_load((ROOT / "deploy" / "dbt" / "dbt_project.yml").read_text())
    assert project["models"]["retail"]["marts"]["+index"] == "CLUSTERED COLUMNSTORE INDEX"


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """The add and replace operations of RFC 6902 (what the overlay uses), on a copy."""
    import copy

    result = copy.deepcopy(document)
    for operation in operations:
        assert operation["op"] in ("add", "replace"), operation
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        node = result
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if operation["op"] == "replace":
            assert last in node, f"{operation['path']} does not exist to replace"
        node[last] = operation["value"]
    return result


def test_the_entra_overlay_gives_valid_manifests_and_a_configuration_the_simulator_takes(tmp_path):
    """deploy/kubernetes/entra: its patches applied to the base (as kustomize does), the result
    valid Kubernetes, the pod labelled for the workload identity webhook, and its simulator.toml
    accepted by the simulator with the variables the webhook injects."""
    import os

    kubernetes = ROOT / "deploy" / "kubernetes"
    overlay = yaml.safe_load((kubernetes / "entra" / "kustomization.yaml").read_text())
    documents = {}
    for resource in overlay["resources"]:
        document = yaml.safe_load((kubernetes / "entra" / resource).read_text())
        documents[(document["kind"], document["metadata"]["name"])] = document
    for patch in overlay["patches"]:
        key = (patch["target"]["kind"], patch["target"]["name"])
        assert key in documents, f"the patch targets {key}, which no resource is"
        documents[key] = apply_json_patch(documents[key], yaml.safe_load(patch["patch"]))
    files = []
    for (kind, _), document in documents.items():
        path = tmp_path / f"{kind.lower()}.yaml"
        path.write_text(yaml.safe_dump(document))
        files.append(str(path))
    validate = ROOT / ".venv" / "bin" / "kubernetes-validate"
    result = subprocess.run([str(validate), "--strict", "--kubernetes-version", "1.30", *files],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr

    deployment = documents[("Deployment", "retail-simulator")]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "retail-simulator"
    account = documents[("ServiceAccount", "retail-simulator")]
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]

    configuration = tmp_path / "simulator.toml"
    configuration.write_text(documents[("ConfigMap", "retail-simulator")]["data"]["simulator.toml"])
    token = tmp_path / "azure-identity-token"
    token.write_text("federated-token")
    simulator = os.environ.get("PIPELINE_SIMULATOR")
    assert simulator, "PIPELINE_SIMULATOR (the simulator's binary) is not set: run through cargo test"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SIMULATOR__", "AZURE_"))}
    environment.update({"AZURE_CLIENT_ID": "00000000-0000-4000-8000-000000000001",
                        "AZURE_TENANT_ID": "00000000-0000-4000-8000-000000000002",
                        "AZURE_FEDERATED_TOKEN_FILE": str(token)})
    printed = subprocess.run([simulator, "--config", str(configuration), "--print-config"],
                             capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert 'auth = "entra"' in printed.stdout and 'namespace = "retail-simulator.servicebus.windows.net"' in printed.stdout
    # Without the webhook's variables the same configuration is refused, naming what is missing.
    refused = subprocess.run([simulator, "--config", str(configuration), "--print-config"], capture_output=True,
                             text=True, env={k: v for k, v in environment.items() if not k.startswith("AZURE_")},
                             cwd=tmp_path)
    assert refused.returncode == 2 and "kafka.entra_token_file: missing" in refused.stderr, refused.stderr


def test_the_api_job_pulls_hours_through_the_same_loader(bundle):
    from databricks.bundles.jobs import Job

    from retail_loader import pull

    job = bundle["resources"]["jobs"]["retail_api_loader"]
    assert Job.from_dict(job).as_dict() == job
    assert job["schedule"]["pause_status"] == "PAUSED", "the Kafka path stays the default"
    assert job["max_concurrent_runs"] == 1
    (task,) = job["tasks"]
    pyproject = tomllib.loads((DATABRICKS / "pyproject.toml").read_text())
    entry = task["python_wheel_task"]["entry_point"]
    assert pyproject["project"]["entry-points"]["packages"][entry] == "retail_loader.pull:main"
    assert any(lib.get("pypi", {}).get("package", "").startswith("fastavro==") for lib in task["libraries"])
    defaults = {name: str(v.get("default") or f"<{name}>") for name, v in bundle["variables"].items()}
    defaults.update(storage_root="abfss://loader@account.dfs.core.windows.net/retail",
                    synapse_jdbc_url="jdbc:sqlserver://ws.sql.azuresynapse.net:1433;database=pool",
                    api_url="https://simulator.example:9464")

    def fill(value: str) -> str:
        value = re.sub(r"\$\{var\.([a-z_]+)\}", lambda m: defaults[m.group(1)], value)
        return value.replace("${bundle.target}", "dev")

    args = pull.arguments([fill(p) for p in task["python_wheel_task"]["parameters"]])
    assert args.api_url == "https://simulator.example:9464" and args.api_token_secret == "api-token"
    raw_loader = bundle["resources"]["jobs"]["retail_raw_loader"]["tasks"][0]["python_wheel_task"]["parameters"]
    assert args.checkpoint_location not in [fill(p) for p in raw_loader], "each job has its own checkpoint"
    with pytest.raises(ValueError, match="not an http"):
        pull.ApiClient("simulator:9464")
    assert pull.offset_bases([
        {"hour": "2026-03-02T00", "events": {"orders": 3, "products": 2}},
        {"hour": "2026-03-02T01", "events": {"orders": 4}},
    ])[("2026-03-02T01", "orders")] == 3
