"""Settings: URL templates (with the original write-up's DB_NAME) and bounds."""

from __future__ import annotations

import pytest

from dbmigrate.config import Settings, url_template
from dbmigrate.errors import ConfigError


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://u:p@h:5432/{database}",
        "postgresql://u:p@h:5432/DB_NAME",
        "postgresql://u:p@h:5432/{DB_NAME}",
        "postgres://u:p@h:5432/DB_NAME?sslmode=require",
    ],
)
def test_database_placeholders_are_accepted(template: str) -> None:
    url = Settings(url_template=template).url("projectdb")
    assert url.split("?")[0].endswith("@h:5432/projectdb")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("postgresql://u:p@h:5432/projectdb", "no {database} placeholder"),
        ("mysql://u:p@h/{database}", "must start with postgresql://"),
    ],
)
def test_bad_urls_are_configuration_errors(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(url_template=template)


def test_negative_timeouts_are_refused() -> None:
    with pytest.raises(ConfigError, match="lock wait must not be negative"):
        Settings(url_template="postgresql://h/{database}", lock_wait_s=-1)


def test_url_from_secret_parts_quotes_user_and_password() -> None:
    url = url_template("admin", "p@ss:w/rd?", "db.example", 5432, sslmode="require")
    assert url == "postgresql://admin:p%40ss%3Aw%2Frd%3F@db.example:5432/{database}?sslmode=require"
    assert Settings(url_template=url).url("x").startswith("postgresql://admin:p%40ss")


def test_timeouts_become_server_options() -> None:
    settings = Settings(url_template="postgresql://h/{database}", statement_timeout_s=1.5, lock_timeout_s=2)
    assert settings.server_options() == "-c statement_timeout=1500 -c lock_timeout=2000"
