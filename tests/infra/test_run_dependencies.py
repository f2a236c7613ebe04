"""The deploy-time run and the database start only after everything they need at run time exists.

What the function needs is derived from the synthesized JSON, starting from the function
the invocation calls: its subnets' route tables (without an association a subnet uses the
VPC's main table, which has no S3 route), the gateway endpoints on those tables, the
interface endpoints in its subnets and the rules of their security groups, the rules of
its own security group and those that let it into the database, its role's policies, the
bucket's objects and policy, and the secrets and keys it reads. Each of them must be in the
invocation's dependency closure (references and ``depends_on``, followed transitively), so
a rule added later that the run does not wait for fails here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest

from .conftest import Synth
from .terraform_json import Stack, block, dependency_closure, expression_references, only, ref, resources

RULE_TYPES = (
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_security_group_rule",
)
ROLE_POLICY_TYPES = ("aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_role_policies_exclusive")
ROLE_ATTRIBUTES = ("role", "roles", "role_name")


def addresses_of(stack: Stack, types: Iterable[str] | None = None) -> list[str]:
    """``type.name`` of every resource of the given types (all types when ``None``)."""
    chosen = stack.get("resource", {}) if types is None else {kind: resources(stack, kind) for kind in types}
    return [f"{kind}.{name}" for kind, blocks in chosen.items() for name in blocks]


def refs(stack: Stack, address: str, *attributes: str) -> set[str]:
    """The addresses that the given attributes of one resource refer to."""
    settings = block(stack, address)
    return expression_references([settings.get(attribute) for attribute in attributes])


def of_type(found: Iterable[str], *types: str) -> set[str]:
    return {address for address in found if address.split(".")[0] in types}


def referring(
    stack: Stack, targets: set[str], attributes: Iterable[str], types: Iterable[str] | None = None
) -> set[str]:
    """The resources (of the given types) whose given attributes refer to one of ``targets``."""
    attributes = tuple(attributes)
    return {address for address in addresses_of(stack, types) if refs(stack, address, *attributes) & targets}


def runtime_path(stack: Stack, function: str) -> dict[str, set[str]]:
    """What the function needs at run time, by reason, derived from its own settings."""
    settings = block(stack, function)
    vpc_config = settings.get("vpc_config", {})
    subnets = of_type(expression_references(vpc_config.get("subnet_ids")), "aws_subnet")
    function_sgs = of_type(expression_references(vpc_config.get("security_group_ids")), "aws_security_group")

    associations = referring(stack, subnets, ["subnet_id"])
    route_tables = of_type(
        set().union(*(refs(stack, item, "route_table_id") for item in associations)), "aws_route_table"
    )
    routes = referring(stack, route_tables, ["route_table_id", "route_table_ids"]) - associations
    interface_endpoints = referring(stack, subnets, ["subnet_ids"], ["aws_vpc_endpoint"])
    endpoint_sgs = of_type(
        set().union(*(refs(stack, item, "security_group_ids") for item in interface_endpoints)), "aws_security_group"
    )

    role = of_type(refs(stack, function, "role"), "aws_iam_role")
    environment = expression_references(settings.get("environment"))
    buckets = of_type(environment, "aws_s3_bucket")
    secrets = of_type(environment, "aws_secretsmanager_secret")
    keys = of_type(expression_references(settings) | _policy_references(stack, role), "aws_kms_key")
    return {
        "route table associations of its subnets": associations,
        "route tables of its subnets, their routes and gateway endpoints": route_tables | routes,
        "interface endpoints in its subnets": interface_endpoints,
        "rules of the endpoints' security groups": referring(stack, endpoint_sgs, ["security_group_id"], RULE_TYPES),
        "rules of its own security group": referring(stack, function_sgs, ["security_group_id"], RULE_TYPES),
        "rules that let it in elsewhere (the database)": referring(
            stack, function_sgs, ["referenced_security_group_id", "source_security_group_id"], RULE_TYPES
        ),
        "its role's policies": referring(stack, role, ROLE_ATTRIBUTES, ROLE_POLICY_TYPES),
        "the bucket's objects and policy": referring(
            stack, buckets, ["bucket"], ["aws_s3_object", "aws_s3_bucket_policy"]
        ),
        "the secrets and keys it reads": secrets
        | referring(stack, secrets, ["secret_id"])
        | keys
        | referring(stack, keys, ["key_id"], ["aws_kms_grant"]),
    }


def _policy_references(stack: Stack, roles: set[str]) -> set[str]:
    found: set[str] = set()
    for policy in referring(stack, roles, ROLE_ATTRIBUTES, ROLE_POLICY_TYPES):
        found |= refs(stack, policy, "policy", "policy_arn")
    return found


def missing_run_dependencies(stack: Stack) -> dict[str, set[str]]:
    """What the function needs at run time that the invocation does not wait for, by reason."""
    invocation, settings = only(stack, "aws_lambda_invocation")
    (function,) = of_type(expression_references(settings["function_name"]), "aws_lambda_function")
    closure = dependency_closure(stack, f"aws_lambda_invocation.{invocation}")
    missing = {reason: needed - closure for reason, needed in runtime_path(stack, function).items()}
    return {reason: found for reason, found in missing.items() if found}


@pytest.mark.parametrize("variant", ["default", "byo"])
def test_the_deploy_time_run_waits_for_everything_on_the_functions_path(synths: dict[str, Synth], variant: str) -> None:
    assert missing_run_dependencies(synths[variant].stack) == {}


def test_the_derived_path_covers_network_rules_policies_and_objects(stack: dict[str, Any]) -> None:
    (function,) = addresses_of(stack, ["aws_lambda_function"])
    path = runtime_path(stack, function)
    empty = {reason for reason, found in path.items() if not found}
    assert empty <= {"the secrets and keys it reads"}, f"the derivation found nothing for {sorted(empty)}"
    assert of_type(path["route table associations of its subnets"], "aws_route_table_association")
    assert of_type(path["route tables of its subnets, their routes and gateway endpoints"], "aws_vpc_endpoint")
    assert len(path["route table associations of its subnets"]) == len(resources(stack, "aws_subnet"))


def test_a_rule_added_without_ordering_the_run_after_it_is_found(stack: dict[str, Any]) -> None:
    changed = copy.deepcopy(stack)
    endpoint_sg = next(name for name in resources(stack, "aws_security_group") if "endpoint" in name)
    rules = changed["resource"]["aws_vpc_security_group_ingress_rule"]
    rules["late_rule"] = {
        "security_group_id": ref("aws_security_group", endpoint_sg, "id"),
        "cidr_ipv4": "10.0.0.0/8",
        "ip_protocol": "tcp",
        "from_port": 443,
        "to_port": 443,
    }
    changed["resource"]["aws_route_table_association"]["late_association"] = {
        "subnet_id": ref("aws_subnet", next(iter(resources(stack, "aws_subnet"))), "id"),
        "route_table_id": ref("aws_route_table", next(iter(resources(stack, "aws_route_table"))), "id"),
    }
    assert missing_run_dependencies(changed) == {
        "rules of the endpoints' security groups": {"aws_vpc_security_group_ingress_rule.late_rule"},
        "route table associations of its subnets": {"aws_route_table_association.late_association"},
    }


@pytest.mark.parametrize("variant", ["default", "byo"])
def test_every_resource_given_a_role_waits_for_the_roles_policies(synths: dict[str, Synth], variant: str) -> None:
    stack = synths[variant].stack
    given = {
        address: roles
        for address in addresses_of(stack)
        if not address.startswith("aws_iam_")
        and (roles := of_type(expression_references(block(stack, address)), "aws_iam_role"))
    }
    expected_types = {"aws_lambda_function"} | ({"aws_db_instance", "aws_flow_log"} if variant == "default" else set())
    assert expected_types <= {address.split(".")[0] for address in given}
    for address, roles in given.items():
        policies = referring(stack, roles, ROLE_ATTRIBUTES, ROLE_POLICY_TYPES)
        assert policies, f"{address}: its role has no policy"
        missing = policies - dependency_closure(stack, address)
        assert not missing, f"{address} can be created before its role's policies {sorted(missing)}"
