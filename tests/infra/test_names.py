"""Every name derived from ``name`` is checked against its AWS limit before anything is deployed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, StackConfig
from infra.database_migrations import DatabaseMigrationsProps, DatabaseTarget
from infra.names import NAME_RULES, NameRule, derived_names, name_problems, postgres_family
from infra.packaging import BuildResult

from .conftest import BYO, Synth, SynthesizeWith

NAME_ATTRIBUTES = (
    "name",
    "name_prefix",
    "bucket",
    "bucket_prefix",
    "identifier",
    "identifier_prefix",
    "function_name",
    "alarm_name",
    "final_snapshot_identifier",
)
LONGEST_NAME = "a" + "b" * 24


def literal_names(stack: dict[str, Any]) -> dict[str, str]:
    """``type.name.attribute`` -> value, for every name-like attribute that is a literal string."""
    return {
        f"{kind}.{name}.{attribute}": value
        for kind, blocks in stack["resource"].items()
        for name, settings in blocks.items()
        for attribute in NAME_ATTRIBUTES
        if isinstance(value := settings.get(attribute), str) and "${" not in value
    }


def name_of_length(length: int) -> str:
    return "a" + "b" * (length - 1)


def overhead(rule: NameRule) -> int:
    return len(rule.render("", postgres_family("16")))


@pytest.mark.parametrize("variant", ["default", "byo"])
def test_every_literal_name_in_the_stack_is_one_the_config_checks(synths: dict[str, Synth], variant: str) -> None:
    checked = set(derived_names("dbmigrate").values())
    found = literal_names(synths[variant].stack)
    assert found, "no names found: the attribute list is stale"
    unchecked = {address: value for address, value in found.items() if value not in checked}
    assert unchecked == {}, "add these names to infra/names.py with their AWS limit"


def test_the_longest_accepted_name_synthesizes_names_within_every_limit(synthesize_with: SynthesizeWith) -> None:
    stack = synthesize_with(name=LONGEST_NAME)
    limits = {rule.render(LONGEST_NAME, postgres_family("16")): rule.kind.limit for rule in NAME_RULES}
    found = literal_names(stack)
    assert set(found.values()) <= set(limits)
    assert all(len(value) <= limits[value] for value in found.values())
    _, bucket = next(iter(stack["resource"]["aws_s3_bucket"].items()))
    assert len(bucket["bucket_prefix"]) == 37


@pytest.mark.parametrize("rule", NAME_RULES, ids=lambda rule: rule.label)
def test_each_derived_name_is_refused_one_character_past_its_limit_naming_it(rule: NameRule) -> None:
    fits = rule.kind.limit - overhead(rule)
    for length in (fits - 1, fits):
        assert list(name_problems(name_of_length(length), rules=[rule])) == [], length
    for length in (fits + 1, fits + 2):
        (problem,) = name_problems(name_of_length(length), rules=[rule])
        assert rule.label in problem
        assert (
            f"would be {length + overhead(rule)} characters (AWS limit {rule.kind.limit}: {rule.kind.source})"
            in problem
        )
        assert f"Fix: use a name of at most {fits} characters" in problem


@pytest.mark.parametrize(("length", "accepted"), [(3, True), (24, True), (25, True), (26, False), (40, False)])
def test_the_config_accepts_names_up_to_the_bucket_prefix_limit(length: int, accepted: bool) -> None:
    name = name_of_length(length)
    if accepted:
        assert StackConfig(name=name).name == name
        return
    with pytest.raises(ConfigError) as refused:
        StackConfig(name=name)
    message = str(refused.value)
    assert f"the bucket's bucket_prefix '{name}-migrations-' would be {length + 12} characters" in message
    assert "AWS limit 37" in message and "Fix: use a name of at most 25 characters" in message


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("sg-prod", "the function's security group name 'sg-prod-migrate'"),
        ("sthree-app", "the bucket's bucket_prefix 'sthree-app-migrations-'"),
        ("amzn-s3-demo-app", "the bucket's bucket_prefix 'amzn-s3-demo-app-migrations-'"),
    ],
)
def test_names_a_service_refuses_by_pattern_are_refused_naming_the_derived_name(name: str, named: str) -> None:
    for settings in ({}, BYO):
        with pytest.raises(ConfigError, match=f"gives {named}, which AWS refuses"):
            StackConfig.from_sources({"name": name, **settings}, {})


@pytest.mark.parametrize("name", ["a--b", "Shop", "shop-", "1shop", "ab"])
def test_names_outside_letters_digits_and_single_hyphens_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="single hyphens"):
        StackConfig(name=name)


def test_the_network_and_database_names_are_checked_only_when_the_stack_creates_them() -> None:
    assert "the DB instance identifier" in derived_names("shop")
    assert "the DB instance identifier" not in derived_names("shop", parts=["migrations"])
    assert "the endpoints' security group name" not in derived_names("shop", parts=["migrations", "database"])


@pytest.mark.parametrize(
    ("version", "family"),
    [("16", "postgres16"), ("16.4", "postgres16"), ("17.2", "postgres17"), ("9.6", "postgres9.6")],
)
def test_the_parameter_group_family_follows_the_engine_version(version: str, family: str) -> None:
    assert postgres_family(version) == family
    prefix = derived_names("shop", engine_version=version)["the DB parameter group's name_prefix"]
    assert prefix == f"shop-{family.replace('.', '-')}-"
    assert list(name_problems("shop", engine_version=version)) == []


def test_the_construct_refuses_a_name_too_long_for_its_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DatabaseMigrationsProps: .*bucket_prefix.*AWS limit 37"):
        DatabaseMigrationsProps(
            name=name_of_length(26),
            vpc_id="vpc-1",
            subnet_ids=["subnet-1"],
            database=DatabaseTarget(host="db", secret_arn="arn:secret", security_group_id="sg-1"),
            migrations_dir=tmp_path,
            package=BuildResult(tmp_path / "lambda.zip", "0" * 64, 0, ()),
        )


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ({"k" * 129: "v"}, "tag key 'kkk"),
        ({"aws:team": "data"}, "tag key 'aws:team'"),
        ({"team": "v" * 257}, "its value of 257 characters"),
        ({"team": "a;b"}, "tag 'team'"),
    ],
)
def test_tags_aws_would_refuse_are_refused_before_deploying(tags: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        StackConfig(tags=tags)


def test_tags_at_the_limits_are_accepted() -> None:
    tags = {"k" * 128: "v" * 256, "cost-center": "", "owner": "team@example.invalid", "path": "a/b:c=d+e"}
    assert StackConfig(tags=tags).tags == tags
