"""The synthesized example stack: every resource the design names, with the settings it names."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from dbmigrate import bundle
from infra.packaging import BuildResult

from .conftest import BYO, MIGRATIONS, ROOT, Synth, SynthesizeWith
from .terraform_json import only, ref, resources, unresolved

HANDLER_ENVIRONMENT = {
    "MIGRATIONS_BUCKET",
    "MIGRATIONS_PREFIX",
    "DB_SECRET_ARN",
    "DB_HOST",
    "DB_PORT",
    "DB_SSLMODE",
    "ROOT_DATABASE",
    "CONNECT_TIMEOUT_S",
    "LOCK_WAIT_S",
    "LOCK_TIMEOUT_S",
    "MIN_TIME_LEFT_S",
    "HISTORY_SCHEMA",
    "NETWORK_TIMEOUT_S",
    "DEAD_CLIENT_CHECK_S",
    "ALLOW_OUT_OF_ORDER",
    "ALL_OR_NOTHING",
    "UPLOAD_SETTLE_S",
    "LOG_LEVEL",
    "ALLOW_DOWN",
    "DEPLOY_PRINCIPAL",
}
MIGRATION_KEYS = sorted(key for key in MIGRATIONS if key.endswith(".sql"))


def policy(text: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    return document


def statements(text: str) -> dict[str, dict[str, Any]]:
    return {statement.get("Sid", str(index)): statement for index, statement in enumerate(policy(text)["Statement"])}


def test_every_resource_the_design_names_is_synthesized(stack: dict[str, Any]) -> None:
    expected = {
        "aws_vpc",
        "aws_subnet",
        "aws_route_table",
        "aws_vpc_endpoint",
        "aws_flow_log",
        "aws_default_security_group",
        "aws_db_instance",
        "aws_db_parameter_group",
        "aws_db_subnet_group",
        "aws_kms_key",
        "aws_s3_bucket",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_policy",
        "aws_s3_object",
        "aws_s3_bucket_notification",
        "aws_sns_topic",
        "aws_sns_topic_policy",
        "aws_sns_topic_subscription",
        "aws_lambda_permission",
        "aws_lambda_function",
        "aws_cloudwatch_log_group",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_sqs_queue",
        "aws_cloudwatch_metric_alarm",
        "aws_lambda_invocation",
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    }
    assert expected <= set(stack["resource"])
    assert "aws_internet_gateway" not in stack["resource"]
    assert "aws_nat_gateway" not in stack["resource"]
    assert "aws_lambda_invocation" not in stack.get("data", {}), "the data source would run on every plan"


def test_function_runs_python312_in_the_private_subnets_with_the_handler_contract(stack: dict[str, Any]) -> None:
    _, function = only(stack, "aws_lambda_function")
    subnets = sorted(resources(stack, "aws_subnet"))
    sg_name = next(name for name in resources(stack, "aws_security_group") if name.startswith("migrations_function"))
    assert function["runtime"] == "python3.12"
    assert function["handler"] == "handler.handler"
    assert function["architectures"] == ["x86_64"]
    assert "reserved_concurrent_executions" not in function, "a reservation fails on accounts limited to 10"
    assert function["vpc_config"]["subnet_ids"] == [ref("aws_subnet", name, "id") for name in subnets]
    assert function["vpc_config"]["security_group_ids"] == [ref("aws_security_group", sg_name, "id")]
    assert all(subnet["map_public_ip_on_launch"] is False for subnet in resources(stack, "aws_subnet").values())

    variables = function["environment"]["variables"]
    assert set(variables) == HANDLER_ENVIRONMENT
    bucket, _ = only(stack, "aws_s3_bucket")
    database, _ = only(stack, "aws_db_instance")
    assert variables["MIGRATIONS_BUCKET"] == ref("aws_s3_bucket", bucket, "id")
    assert variables["MIGRATIONS_PREFIX"] == "migrations/"
    assert variables["DB_SECRET_ARN"] == ref("aws_db_instance", database, "master_user_secret[0].secret_arn")
    assert variables["DB_HOST"] == ref("aws_db_instance", database, "address")
    assert variables["DB_PORT"] == "5432"
    assert variables["DB_SSLMODE"] == "require"
    assert variables["ROOT_DATABASE"] == "postgres"
    assert function["kms_key_arn"].startswith("${aws_kms_key.")
    assert function["dead_letter_config"]["target_arn"].startswith("${aws_sqs_queue.")
    assert function["logging_config"]["log_group"].startswith("${aws_cloudwatch_log_group.")


def test_a_reserved_concurrency_is_set_only_when_asked_for(synthesize_with: SynthesizeWith) -> None:
    _, function = only(synthesize_with(reserved_concurrency=2), "aws_lambda_function")
    assert function["reserved_concurrent_executions"] == 2


def test_the_function_knows_the_deploying_principal_before_the_deploy_uploads(stack: dict[str, Any]) -> None:
    function_name, function = only(stack, "aws_lambda_function")
    (caller,) = stack["data"]["aws_caller_identity"]
    assert function["environment"]["variables"]["DEPLOY_PRINCIPAL"] == ref(
        "data.aws_caller_identity", caller, "user_id"
    )
    for item in resources(stack, "aws_s3_object").values():
        assert f"aws_lambda_function.{function_name}" in item["depends_on"]


def test_a_deploy_principal_in_the_configuration_replaces_the_caller(byo_stack: dict[str, Any]) -> None:
    _, function = only(byo_stack, "aws_lambda_function")
    assert function["environment"]["variables"]["DEPLOY_PRINCIPAL"] == "AROA3XFRBF535EXAMPLE"


def test_function_timeouts_leave_room_for_connect_lock_and_the_last_file(stack: dict[str, Any]) -> None:
    _, function = only(stack, "aws_lambda_function")
    env = function["environment"]["variables"]
    assert function["timeout"] >= 60, "the Lambda default of 3 s cannot even connect"
    assert int(env["CONNECT_TIMEOUT_S"]) * 10 <= function["timeout"]
    assert int(env["LOCK_WAIT_S"]) + int(env["MIN_TIME_LEFT_S"]) < function["timeout"]
    assert function["memory_size"] >= 256


def test_package_is_the_built_zip_with_its_hash(synth: Synth, package: BuildResult) -> None:
    _, function = only(synth.stack, "aws_lambda_function")
    assert function["source_code_hash"] == base64.b64encode(bytes.fromhex(package.sha256)).decode()
    shipped = synth.stack_dir / function["filename"]
    assert not Path(function["filename"]).is_absolute()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == package.sha256


def migration_objects(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The objects of the migration files, by name (not the bundle's, under ``.dbmigrate/``)."""
    return {name: item for name, item in resources(stack, "aws_s3_object").items() if "/.dbmigrate/" not in item["key"]}


def test_one_object_per_migration_file_at_prefix_database_file(synth: Synth, migrations_folder: Path) -> None:
    objects = migration_objects(synth.stack)
    bucket, _ = only(synth.stack, "aws_s3_bucket")
    assert sorted(item["key"] for item in objects.values()) == [f"migrations/{key}" for key in MIGRATION_KEYS]
    for item in objects.values():
        key = item["key"].removeprefix("migrations/")
        content = (migrations_folder / key).read_bytes()
        assert item["bucket"] == ref("aws_s3_bucket", bucket, "id")
        assert item["source_hash"] == hashlib.sha256(content).hexdigest(), "an edited file must show in plan"
        assert (synth.stack_dir / item["source"]).read_bytes() == content
        assert item["kms_key_id"].startswith("${aws_kms_key.")
        assert item["checksum_algorithm"] == "SHA256", "S3 checks the body and reports its checksum back"


def test_the_bundle_holds_every_file_and_its_index_names_each_object_by_what_terraform_read_back(
    synth: Synth, migrations_folder: Path
) -> None:
    everything = resources(synth.stack, "aws_s3_object")
    bundled = {name: item for name, item in everything.items() if "/.dbmigrate/" in item["key"]}
    by_key = {item["key"].removeprefix("migrations/"): name for name, item in migration_objects(synth.stack).items()}
    index_name = next(name for name, item in bundled.items() if item["key"] == f"migrations/{bundle.INDEX_KEY}")
    parts = {item["key"].removeprefix("migrations/"): (name, item) for name, item in bundled.items()}
    del parts[bundle.INDEX_KEY]
    lines = [json.loads(line) for line in bundled[index_name]["content"].splitlines()]
    assert lines[0] == {"format": bundle.FORMAT, "parts": len(parts), "files": len(MIGRATION_KEYS)}
    part_lines = [line for line in lines[1:] if "file" not in line]
    assert {line["key"]: line["etag"] for line in part_lines} == {
        key: ref("aws_s3_object", name, "etag") for key, (name, _) in parts.items()
    }
    part_keys = {line["part"]: line["key"] for line in part_lines}
    file_lines = [line for line in lines[1:] if "file" in line]
    assert [line["file"] for line in file_lines] == MIGRATION_KEYS
    for line in file_lines:
        name = by_key[line["file"]]
        assert line["etag"] == ref("aws_s3_object", name, "etag")
        assert line["sha256"] == ref("aws_s3_object", name, "checksum_sha256")
        assert part_keys[line["part"]].startswith(f".dbmigrate/bundle/{line['file'].split('/')[0]}/part-")
        _, part = parts[part_keys[line["part"]]]
        body = (synth.stack_dir / part["source"]).read_bytes()[line["offset"] : line["offset"] + line["length"]]
        assert body == (migrations_folder / line["file"]).read_bytes()
    for _, part in parts.values():
        assert part["source_hash"] == hashlib.sha256((synth.stack_dir / part["source"]).read_bytes()).hexdigest()
    for item in bundled.values():
        assert item["kms_key_id"].startswith("${aws_kms_key.")
        assert not item["key"].endswith(".sql"), "the upload notification sends .sql keys only"


def test_invocation_migrates_on_every_apply_after_objects_endpoints_and_policies(stack: dict[str, Any]) -> None:
    _, invocation = only(stack, "aws_lambda_invocation")
    function, _ = only(stack, "aws_lambda_function")
    assert json.loads(invocation["input"]) == {"action": "migrate"}
    assert invocation["lifecycle_scope"] == "CRUD"
    assert invocation["terraform_key"] == "tf"
    assert invocation["function_name"] == ref("aws_lambda_function", function, "function_name")
    assert invocation["triggers"]["applied_at"] == "${timestamp()}"

    after = set(invocation["depends_on"])
    assert {f"aws_s3_object.{name}" for name in resources(stack, "aws_s3_object")} <= after
    assert {f"aws_vpc_endpoint.{name}" for name in resources(stack, "aws_vpc_endpoint")} <= after
    function_policy = next(name for name in resources(stack, "aws_iam_role_policy") if "function" in name)
    assert f"aws_iam_role_policy.{function_policy}" in after
    database_rule = next(name for name in resources(stack, "aws_vpc_security_group_ingress_rule") if "database" in name)
    assert f"aws_vpc_security_group_ingress_rule.{database_rule}" in after


def test_on_change_mode_runs_only_when_files_or_code_change(byo_stack: dict[str, Any]) -> None:
    _, invocation = only(byo_stack, "aws_lambda_invocation")
    assert set(invocation["triggers"]) == {"content"}
    assert len(invocation["triggers"]["content"]) == 64


def test_bucket_is_private_versioned_encrypted_and_tls_only(stack: dict[str, Any]) -> None:
    bucket, settings = only(stack, "aws_s3_bucket")
    bucket_id = ref("aws_s3_bucket", bucket, "id")
    _, public = only(stack, "aws_s3_bucket_public_access_block")
    assert public["bucket"] == bucket_id
    assert all(
        public[flag] is True
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    _, ownership = only(stack, "aws_s3_bucket_ownership_controls")
    assert ownership["rule"]["object_ownership"] == "BucketOwnerEnforced"
    _, versioning = only(stack, "aws_s3_bucket_versioning")
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    _, encryption = only(stack, "aws_s3_bucket_server_side_encryption_configuration")
    assert encryption["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    _, bucket_policy = only(stack, "aws_s3_bucket_policy")
    deny = statements(bucket_policy["policy"])["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "acl" not in settings and settings.get("force_destroy") is False


def test_database_is_private_encrypted_tls_forced_with_managed_password(stack: dict[str, Any]) -> None:
    _, database = only(stack, "aws_db_instance")
    assert database["engine"] == "postgres"
    assert database["publicly_accessible"] is False
    assert database["storage_encrypted"] is True
    assert database["manage_master_user_password"] is True
    assert "password" not in database
    assert database["deletion_protection"] is True
    assert database["iam_database_authentication_enabled"] is True
    _, parameters = only(stack, "aws_db_parameter_group")
    assert {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"} in parameters["parameter"]
    assert database["parameter_group_name"].startswith("${aws_db_parameter_group.")


def test_network_has_two_private_subnets_and_endpoints_for_s3_and_secrets(stack: dict[str, Any]) -> None:
    subnets = resources(stack, "aws_subnet")
    assert len(subnets) == 2
    assert {subnet["availability_zone"] for subnet in subnets.values()} == {
        f"${{element(data.aws_availability_zones.{only_zone(stack)}.names, {index})}}" for index in (0, 1)
    }
    endpoints = {item["vpc_endpoint_type"]: item for item in resources(stack, "aws_vpc_endpoint").values()}
    routes, _ = only(stack, "aws_route_table")
    assert endpoints["Gateway"]["service_name"] == "com.amazonaws.eu-west-1.s3"
    assert endpoints["Gateway"]["route_table_ids"] == [ref("aws_route_table", routes, "id")]
    assert endpoints["Interface"]["service_name"] == "com.amazonaws.eu-west-1.secretsmanager"
    assert endpoints["Interface"]["private_dns_enabled"] is True
    _, default_sg = only(stack, "aws_default_security_group")
    assert "ingress" not in default_sg and "egress" not in default_sg


def test_subnets_are_placed_only_in_the_regions_own_zones_never_local_zones(stack: dict[str, Any]) -> None:
    zones = stack["data"]["aws_availability_zones"][only_zone(stack)]
    assert zones["state"] == "available"
    assert zones["filter"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def only_zone(stack: dict[str, Any]) -> str:
    return str(next(iter(stack["data"]["aws_availability_zones"])))


def test_function_egress_is_only_the_database_and_https(stack: dict[str, Any]) -> None:
    egress = resources(stack, "aws_vpc_security_group_egress_rule").values()
    assert {(rule["ip_protocol"], rule["from_port"]) for rule in egress} == {("tcp", 5432), ("tcp", 443)}
    assert not any(rule.get("cidr_ipv4") == "0.0.0.0/0" for rule in egress)
    database_sg = next(name for name in resources(stack, "aws_security_group") if name.startswith("database"))
    ingress = [
        rule
        for rule in resources(stack, "aws_vpc_security_group_ingress_rule").values()
        if rule["security_group_id"] == ref("aws_security_group", database_sg, "id")
    ]
    assert len(ingress) == 1 and ingress[0]["referenced_security_group_id"].startswith("${aws_security_group.migr")


def test_uploads_reach_the_function_through_sns_and_only_from_the_bucket(stack: dict[str, Any]) -> None:
    bucket, _ = only(stack, "aws_s3_bucket")
    topic, settings = only(stack, "aws_sns_topic")
    function, _ = only(stack, "aws_lambda_function")
    topic_arn = ref("aws_sns_topic", topic, "arn")
    assert settings["kms_master_key_id"].startswith("${aws_kms_key.")

    _, notification = only(stack, "aws_s3_bucket_notification")
    (rule,) = notification["topic"]
    assert rule["topic_arn"] == topic_arn
    assert rule["events"] == ["s3:ObjectCreated:*"]
    assert (rule["filter_prefix"], rule["filter_suffix"]) == ("migrations/", ".sql")
    topic_policy_name, topic_policy = only(stack, "aws_sns_topic_policy")
    assert f"aws_sns_topic_policy.{topic_policy_name}" in notification["depends_on"]
    publish = statements(topic_policy["policy"])["BucketPublishes"]
    assert publish["Principal"] == {"Service": "s3.amazonaws.com"}
    assert publish["Condition"]["ArnLike"] == {"aws:SourceArn": ref("aws_s3_bucket", bucket, "arn")}

    _, subscription = only(stack, "aws_sns_topic_subscription")
    assert subscription["protocol"] == "lambda"
    assert subscription["endpoint"] == ref("aws_lambda_function", function, "arn")
    _, permission = only(stack, "aws_lambda_permission")
    assert permission["principal"] == "sns.amazonaws.com"
    assert permission["source_arn"] == topic_arn


def test_failed_async_runs_land_in_a_dead_letter_queue_that_raises_an_alarm(stack: dict[str, Any]) -> None:
    queue, settings = only(stack, "aws_sqs_queue")
    _, alarm = only(stack, "aws_cloudwatch_metric_alarm")
    assert settings["kms_master_key_id"].startswith("${aws_kms_key.")
    assert alarm["namespace"] == "AWS/SQS"
    assert alarm["dimensions"] == {"QueueName": ref("aws_sqs_queue", queue, "name")}
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)


def test_function_may_read_only_its_prefix_and_its_secret(stack: dict[str, Any]) -> None:
    name = next(name for name in resources(stack, "aws_iam_role_policy") if "function" in name)
    granted = statements(resources(stack, "aws_iam_role_policy")[name]["policy"])
    bucket, _ = only(stack, "aws_s3_bucket")
    database, _ = only(stack, "aws_db_instance")
    bucket_arn = ref("aws_s3_bucket", bucket, "arn")
    assert granted["ReadMigrations"]["Resource"] == f"{bucket_arn}/migrations/*"
    assert granted["ListMigrations"]["Condition"] == {"StringLike": {"s3:prefix": ["migrations/*"]}}
    assert granted["ReadDatabaseSecret"]["Resource"] == ref(
        "aws_db_instance", database, "master_user_secret[0].secret_arn"
    )
    writes = {action for statement in granted.values() for action in _actions(statement)}
    assert not any(action.startswith(("s3:Put", "s3:Delete", "secretsmanager:Put", "iam:")) for action in writes)
    assert not any(action.endswith("*") for action in writes)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_log_groups_keep_a_year_encrypted(stack: dict[str, Any]) -> None:
    for group in resources(stack, "aws_cloudwatch_log_group").values():
        assert group["retention_in_days"] == 365
        assert group["kms_key_id"].startswith("${aws_kms_key.")


def test_outputs_name_the_function_the_bucket_and_the_result(stack: dict[str, Any]) -> None:
    invocation, _ = only(stack, "aws_lambda_invocation")
    assert {"function_name", "bucket", "migration_result"} <= set(stack["output"])
    assert stack["output"]["migration_result"]["value"] == ref("aws_lambda_invocation", invocation, "result")


def test_every_reference_resolves(synths: dict[str, Synth]) -> None:
    for variant, synth in synths.items():
        assert unresolved(synth.stack) == set(), variant


def test_the_reference_check_finds_dangling_references() -> None:
    stack = {
        "resource": {
            "aws_s3_bucket": {"b": {"bucket": "x"}},
            "aws_s3_object": {"o": {"depends_on": ["aws_sqs_queue.q"]}},
        },
        "data": {"aws_region": {"r": {}}},
        "output": {
            "ok": {"value": "${aws_s3_bucket.b.arn}-${data.aws_region.r.region}-${timestamp()}"},
            "bad": {"value": "${element(aws_subnet.gone.*.id, 0)} ${data.aws_vpc.missing.id} ${var.nope}"},
            "literal": {"value": '${jsonencode({"a.b" = "c.d"})}'},
        },
    }
    assert unresolved(stack) == {"aws_subnet.gone", "data.aws_vpc.missing", "var.nope", "aws_sqs_queue.q"}


def test_output_holds_no_absolute_path_of_this_machine(synths: dict[str, Synth]) -> None:
    for synth in synths.values():
        text = (synth.stack_dir / "cdk.tf.json").read_text(encoding="utf-8")
        assert str(ROOT) not in text and "/tmp/" not in text
        assert synth.stack["terraform"]["backend"] == {"local": {"path": "terraform.tfstate"}}


def test_bring_your_own_network_and_database_creates_neither(byo_stack: dict[str, Any]) -> None:
    for kind in ("aws_vpc", "aws_subnet", "aws_vpc_endpoint", "aws_db_instance", "aws_db_subnet_group", "aws_flow_log"):
        assert kind not in byo_stack["resource"], kind
    _, function = only(byo_stack, "aws_lambda_function")
    assert function["vpc_config"]["subnet_ids"] == list(BYO["existing_subnet_ids"])
    variables = function["environment"]["variables"]
    assert variables["DB_HOST"] == BYO["existing_db_host"]
    assert variables["DB_SECRET_ARN"] == BYO["existing_db_secret_arn"]
    (rule,) = resources(byo_stack, "aws_vpc_security_group_ingress_rule").values()
    assert rule["security_group_id"] == BYO["existing_db_security_group_id"]
    name = next(iter(resources(byo_stack, "aws_iam_role_policy")))
    keys = statements(resources(byo_stack, "aws_iam_role_policy")[name]["policy"])["UseKeys"]["Resource"]
    assert BYO["existing_db_secret_kms_key_arn"] in keys
