"""The database URL: checked once the way libpq reads it, and its password masked in every form."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import psycopg2
import psycopg2.extensions
import pytest

from dbmigrate.config import Settings
from dbmigrate.dburl import LIBPQ_OPTIONS, Masker, parse_url
from dbmigrate.errors import ConfigError

SECRET = "Tr0ub4dor secret"  # a space: encoded %20 or +
ENCODED = quote(SECRET, safe="")


def every_form(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote_plus(secret, safe=""), secret.replace(" ", "+")]


def refusal(template: str) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings(url_template=template)
    return str(caught.value)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (f"postgresql://u:{ENCODED}%zz@h:5432/{{database}}", "the password has a '%' that is not followed by two hex"),
        (f"postgresql://u:{ENCODED}%4@h:5432/{{database}}", "the password has a '%' that is not followed by two hex"),
        (f"postgresql://u%g1:{ENCODED}@h:5432/{{database}}", "the user has a '%' that is not followed by two hex"),
        (f"postgresql://u:{ENCODED}%00@h/{{database}}", "the password holds %00"),
        (f"postgresql://u:{ENCODED}%ff@h/{{database}}", "the password's percent-escapes are not UTF-8"),
        (f"postgresql://u:{ENCODED}@h/{{database}}?application_name=a%zz", "value of application_name has a '%'"),
        (f"postgresql://u:{ENCODED}@[]:5432/{{database}}", "the IPv6 host '[]' is empty"),
        (f"postgresql://u:{ENCODED}@[::1:5432/{{database}}", "is not closed with ']'"),
        (f"postgresql://u:{ENCODED}@[not-v6]:5432/{{database}}", "[not-v6] is not an IPv6 address"),
        (f"postgresql://u:{ENCODED}@:5432/{{database}}", "a host is empty"),
        (f"postgresql://u:{ENCODED}@/{{database}}", "it names no host"),
        (f"postgresql://u:{ENCODED}@h1,,h2/{{database}}", "a host is empty"),
        (f"postgresql://u:{ENCODED}@h:5432/{{database}}?foo=1", "unknown connection option 'foo'"),
        (f"postgresql://u:{ENCODED}@h:5432/{{database}}?sslmode=require&SSLMODE=require", "option 'SSLMODE'"),
        (f"postgresql://u:{ENCODED}@h:5432/{{database}}?connect_timeout", "'connect_timeout' is not name=value"),
        (f"postgresql://u:{ENCODED}@h:5432/{{database}}?sslmode=on", "sslmode 'on' is not one of disable"),
        (f"postgresql://u:{ENCODED}@h:5432/{{database}}?dbname=x", "the dbname option is not allowed"),
        (f"postgresql://u:{ENCODED}@h:port/{{database}}", "port 'port' is not a number from 1 to 65535"),
        (f"postgresql://u:{ENCODED}@h:99999/{{database}}", "port '99999' is not a number from 1 to 65535"),
        (f"postgresql://u:{ENCODED}@h:-1/{{database}}", "port '-1' is not a number"),
        (f"postgresql://u:{ENCODED}@h:/{{database}}", "port '' is not a number"),
        (f"postgresql://u:{ENCODED}@[::1]x/{{database}}", "unexpected 'x' after [::1]"),
        (f"postgresql://u:{SECRET}@h:5432/{{database}}", "the password holds characters that must be percent-encoded"),
        ("postgresql://u:Tr0ub4dor@secret@h:5432/{database}", "the user or password holds '@'"),
        ("postgresql://u:Tr0ub4dor#secret@h:5432/{database}", "must be percent-encoded"),
        (f"postgresql://u:{ENCODED}@h:5432/projectdb", "no {database} placeholder"),
        (f"postgresql://u:{ENCODED}@h:5432/db_{{database}}", "the path must be exactly /{database}"),
        (f"mysql://u:{ENCODED}@h/{{database}}", "must start with postgresql://"),
        (f"postgresql://u:{ENCODED}@h host/{{database}}", "host 'h host' is not a host name or address"),
    ],
)
def test_a_malformed_url_is_a_config_error_naming_the_problem_with_the_password_masked(
    template: str, problem: str
) -> None:
    message = refusal(template)
    assert problem in message
    assert ":***@" in message
    for form in [*every_form(SECRET), "Tr0ub4dor@secret", "Tr0ub4dor#secret"]:
        assert form not in message


@pytest.mark.parametrize(
    "template",
    [
        f"postgresql://u:{ENCODED}@h:5432/{{database}}",
        f"postgres://u:{ENCODED}@db.internal/{{database}}?sslmode=verify-full&application_name=ci%20run",
        f"postgresql://u:{ENCODED}@[::1]:5432/{{database}}",
        f"postgresql://u:{ENCODED}@[fe80::1%25eth0]/{{database}}",
        f"postgresql://u:{ENCODED}@h1:5432,h2:5433,[::1]/{{database}}?target_session_attrs=read-write",
        "postgresql://u@h/{database}?password=x%20y&ssl=true",
        "postgresql:///{database}?host=/var/run/postgresql",
        "postgresql://u@%2Fvar%2Frun%2Fpostgresql:5433/{database}",
        "postgresql://h/{database}",
        f"postgresql://u:{ENCODED}@h:5432/DB_NAME",
    ],
)
def test_well_formed_urls_are_accepted_and_libpq_reads_them_the_same(template: str) -> None:
    settings = Settings(url_template=template)
    params = psycopg2.extensions.parse_dsn(settings.url("projectdb"))
    assert params["dbname"] == "projectdb"


def test_the_url_names_its_hosts_and_ports_for_messages() -> None:
    assert parse_url("postgresql:///{database}?host=/run/pg").target("x") == "/run/pg:5432/x"
    assert parse_url("postgresql://%2Frun%2Fpg/{database}").target("x") == "/run/pg:5432/x"
    parsed = parse_url(f"postgresql://u:{ENCODED}@h1:6432,[::1]/{{database}}")
    assert parsed.hosts == (("h1", 6432), ("[::1]", 5432))
    assert parsed.target("projectdb") == "h1:6432/projectdb"
    assert parsed.masked == "postgresql://u:***@h1:6432,[::1]/{database}"


@pytest.mark.parametrize("option", sorted(LIBPQ_OPTIONS))
def test_every_option_listed_is_one_the_installed_libpq_accepts(option: str) -> None:
    value = {"ssl": "true", "sslmode": "require", "port": "5432", "host": "h"}.get(option, "1")
    try:
        psycopg2.extensions.parse_dsn(f"postgresql://h/db?{option}={value}")
    except psycopg2.ProgrammingError as exc:
        assert "invalid URI query parameter" not in str(exc)


def test_libpq_refuses_an_option_the_list_leaves_out() -> None:
    with pytest.raises(psycopg2.ProgrammingError, match="invalid URI query parameter"):
        psycopg2.extensions.parse_dsn("postgresql://h/db?no_such_option=1")


def test_a_settings_object_never_shows_its_url_in_its_repr() -> None:
    settings = Settings(url_template=f"postgresql://u:{ENCODED}@h/{{database}}")
    assert ENCODED not in repr(settings)
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "text",
    [
        f"invalid dsn: invalid percent-encoded token: {SECRET}",
        f"the password is {ENCODED} here",
        f"form-encoded: {quote_plus(SECRET)}",
        f"postgresql://u:{SECRET}@h/db",
        f"host=h password='{SECRET}' dbname=x",
    ],
)
def test_a_masker_hides_a_known_password_in_every_encoding(text: str) -> None:
    masker = Masker()
    masker.add_url(f"postgresql://u:{ENCODED}@h/{{database}}")
    masked = masker(text)
    for form in every_form(SECRET):
        assert form not in masked
    assert "***" in masked


def test_a_masker_hides_passwords_given_as_query_options() -> None:
    masker = Masker()
    masker.add_url("postgresql://u@h/{database}?password=query%20secret&sslpassword=key+secret")
    masked = masker("sent query secret and key secret and query%20secret")
    assert "secret" not in masked.replace("***", "")


def test_a_masker_hides_the_password_of_a_malformed_url() -> None:
    masker = Masker()
    masker.add_url("postgresql://u:raw pass@word@[]:5432/{database}")
    assert masker("libpq said: raw pass@word") == "libpq said: ***"


def test_settings_mask_their_own_password_in_a_library_message() -> None:
    settings = Settings(url_template=f"postgresql://u:{ENCODED}@h/{{database}}?sslpassword=k3y%2Bpass")
    masked = settings.masker()(f"failed: {SECRET} / {quote_plus(SECRET)} / k3y+pass")
    assert masked == "failed: *** / *** / ***"


def test_an_unexpected_error_holding_the_password_is_replaced_by_a_masked_one() -> None:
    masker = Masker()
    masker.add_url(f"postgresql://u:{ENCODED}@h/{{database}}")
    leaked = masker.error(ValueError(f"invalid dsn: invalid percent-encoded token: {ENCODED}%zz"))
    assert isinstance(leaked, RuntimeError)
    assert str(leaked) == "ValueError: invalid dsn: invalid percent-encoded token: ***%zz"
    harmless = KeyError("version")
    assert masker.error(harmless) is harmless


def test_a_migration_error_is_masked_in_every_field() -> None:
    masker = Masker()
    masker.add(SECRET)
    error = ConfigError(f"bad {SECRET}", hint=f"not {quote_plus(SECRET)}", statement=ENCODED, extra=SECRET)
    masked = masker.error(error)
    assert masked is error
    assert all(form not in json_text for form in every_form(SECRET) for json_text in [str(error), repr(error)])
    assert error.to_dict()["extra"] == "***" and error.statement == "***"
