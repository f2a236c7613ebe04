"""The database URL: parsed and checked once, and the one masking helper for its secrets.

A ``postgresql://user:password@host:port/{database}?option=value`` template is checked
the way libpq will read it (scheme, hosts with bracketed IPv6 and ports, percent
escapes, known connection options, the ``{database}`` placeholder), so that a
malformed URL is a ConfigError naming the problem, never libpq's own message (which
quotes the password). Every edge (CLI, handler, JSON logs) masks text with a
``Masker``: the password in every form it may take (raw, percent-encoded, ``+`` for
space), and credentials in any ``scheme://user:password@`` URL or ``password=`` option.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import overload
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from .errors import ConfigError, MigrationError

__all__ = ["LIBPQ_OPTIONS", "DatabaseUrl", "Masker", "mask_credentials", "parse_url", "url_secrets"]

PLACEHOLDER = "{database}"
SCHEMES = ("postgresql://", "postgres://")
MASK = "***"
# Connection options libpq 17 (the one psycopg2-binary bundles) accepts in a URL's query.
# ``ssl=true`` is libpq's JDBC-compatible spelling of sslmode=require.
LIBPQ_OPTIONS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "dbname",
        "fallback_application_name",
        "gssdelegation",
        "gssencmode",
        "gsslib",
        "host",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "options",
        "passfile",
        "password",
        "port",
        "replication",
        "require_auth",
        "requirepeer",
        "requiressl",
        "service",
        "ssl",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcertmode",
        "sslcompression",
        "sslcrl",
        "sslcrldir",
        "sslkey",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    }
)
_Refuse = Callable[..., ConfigError]
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Characters a URL's user, password or option value may hold unescaped (RFC 3986 userinfo).
PLAIN = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:%]*$")
HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
URL_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s\"']*:)[^\s\"']*@", re.IGNORECASE)
LIBPQ_PASSWORD = re.compile(r"(?P<head>\b(?:ssl)?password\s*=\s*)('[^']*'|[^\s&\"']+)", re.IGNORECASE)
# Secrets shorter than this are masked only where the URL or DSN structure shows them:
# replacing every "pw" in a message would hide the message, not a secret.
MIN_MASKED_LENGTH = 4


@dataclass(frozen=True)
class DatabaseUrl:
    """A checked URL template: where it points, and what in it is secret."""

    template: str
    hosts: tuple[tuple[str, int], ...]
    user: str | None
    options: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]

    @property
    def masked(self) -> str:
        """The template with every secret replaced by ``***``, for messages."""
        return mask_credentials(self.template, secrets=self.secrets)

    def target(self, database: str) -> str:
        """``host:port/database`` (the first host), for messages."""
        host, port = self.hosts[0]
        return f"{host}:{port}/{database}"


def parse_url(template: str) -> DatabaseUrl:
    """Check a URL template as libpq will read it; ConfigError names the problem, password masked."""
    masked = mask_credentials(template, secrets=url_secrets(template))

    def refuse(problem: str, hint: str = "") -> ConfigError:
        example = "postgresql://user:password@host:5432/{database}"
        return ConfigError(
            f"the database URL {masked} is malformed: {problem}",
            hint=hint or f"write it like {example}, with special characters in the password percent-encoded",
        )

    scheme = next((s for s in SCHEMES if template.startswith(s)), None)
    if scheme is None:
        raise refuse("it must start with postgresql:// or postgres://")
    rest = template[len(scheme) :]
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostspec = authority.rpartition("@")
    if at and "@" in userinfo:
        raise refuse("the user or password holds '@'", "percent-encode '@' in the user or password as %40")
    user, _, password = userinfo.partition(":")
    for label, part in (("user", user), ("password", password)):
        if not PLAIN.match(part):
            raise refuse(
                f"the {label} holds characters that must be percent-encoded (space, '/', '?', '#', ...)",
                f"percent-encode the {label} (space as %20, '/' as %2F, '?' as %3F, '#' as %23)",
            )
        _check_escapes(part, label, refuse)
    options = _options(query, refuse)
    option_names = {name for name, _ in options}
    hosts = _hosts(hostspec, host_option=dict(options).get("host"), refuse=refuse)
    _check_escapes(path, "database name", refuse)
    if not slash or path != PLACEHOLDER:
        if PLACEHOLDER not in template:
            raise refuse(
                "it has no {database} placeholder",
                "put {database} where the database name goes: postgresql://user:pw@host:5432/{database}",
            )
        raise refuse("the path must be exactly /{database}", "the database comes from the migrations folder's name")
    if "dbname" in option_names:
        raise refuse("the dbname option is not allowed", "the database name comes from {database} in the path")
    secrets = url_secrets(template)
    return DatabaseUrl(template, hosts, unquote(user) or None, tuple(options), tuple(secrets))


def _check_escapes(text: str, label: str, refuse: _Refuse) -> None:
    if BAD_ESCAPE.search(text):
        raise refuse(f"the {label} has a '%' that is not followed by two hex digits", "write '%' itself as %25")
    if "%00" in text:
        raise refuse(f"the {label} holds %00 (a zero byte)")
    try:
        unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise refuse(f"the {label}'s percent-escapes are not UTF-8") from None


def _hosts(hostspec: str, *, host_option: str | None, refuse: _Refuse) -> tuple[tuple[str, int], ...]:
    if not hostspec:
        if host_option:  # postgresql:///{database}?host=/var/run/postgresql
            return ((host_option, 5432),)
        raise refuse("it names no host", "put the server's host name or address after '@'")
    hosts = []
    for item in hostspec.split(","):
        host, port_text = _split_port(item, refuse)
        if port_text is not None and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise refuse(f"port {port_text!r} is not a number from 1 to 65535")
        hosts.append((host, int(port_text) if port_text else 5432))
    return tuple(hosts)


def _split_port(item: str, refuse: _Refuse) -> tuple[str, str | None]:
    if item.startswith("["):
        address, bracket, tail = item[1:].partition("]")
        if not bracket:
            raise refuse("an IPv6 address opened with '[' is not closed with ']'")
        if not address:
            raise refuse("the IPv6 host '[]' is empty", "write the address inside the brackets, e.g. [::1]")
        try:
            ipaddress.IPv6Address(unquote(address).split("%", 1)[0])
        except ValueError:
            raise refuse(f"[{address}] is not an IPv6 address") from None
        if tail and not tail.startswith(":"):
            raise refuse(f"unexpected {tail!r} after [{address}]")
        return f"[{address}]", (tail[1:] if tail else None)
    host, colon, port = item.partition(":")
    if not host:
        raise refuse("a host is empty", "name every host: host1:5432,host2:5432")
    if host.startswith("%2F") or host.startswith("%2f"):  # a socket folder, percent-encoded: %2Ftmp
        _check_escapes(host, "host", refuse)
        return unquote(host), (port if colon else None)
    if not HOST_NAME.match(host):
        raise refuse(f"host {host!r} is not a host name or address (IPv6 addresses go in brackets: [::1])")
    return host, (port if colon else None)


def _options(query: str, refuse: _Refuse) -> list[tuple[str, str]]:
    options = []
    for pair in query.split("&") if query else ():
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise refuse(f"query part {name or pair!r} is not name=value")
        if name not in LIBPQ_OPTIONS:
            raise refuse(
                f"unknown connection option {name!r}",
                f"use libpq's connection options only: {', '.join(sorted(LIBPQ_OPTIONS - {'dbname'}))}",
            )
        _check_escapes(value, f"value of {name}", refuse)
        decoded = unquote(value)
        if name == "sslmode" and decoded not in SSL_MODES:
            raise refuse(f"sslmode {decoded!r} is not one of {', '.join(SSL_MODES)}")
        options.append((name, decoded))
    return options


def url_secrets(text: str) -> list[str]:
    """Every form the passwords in a URL (even a malformed one) may take in any text.

    The URL's password as written, decoded (``%XX`` and ``+``), and encoded again the
    ways libraries encode it; the same for ``password=`` and ``sslpassword=`` options.
    """
    found: list[str] = []
    scheme_end = text.find("://")
    if scheme_end >= 0:
        before_query = text[scheme_end + 3 :].split("?", 1)[0]
        userinfo = before_query[: before_query.rfind("@")] if "@" in before_query else ""
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group(2).strip("'") for m in LIBPQ_PASSWORD.finditer(text)]
    forms: set[str] = set()
    for raw in found:
        for decoded in (raw, unquote(raw), unquote_plus(raw)):
            forms |= {decoded, quote(decoded, safe=""), quote_plus(decoded, safe=""), quote(decoded)}
    return sorted((form for form in forms if form), key=len, reverse=True)


def mask_credentials(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``postgresql://u:secret@h`` -> ``postgresql://u:***@h``; ``password=secret`` -> ``password=***``.

    ``secrets`` (known passwords, in the forms ``url_secrets`` gives) are replaced
    wherever they appear, when at least MIN_MASKED_LENGTH long.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_MASKED_LENGTH:
            text = text.replace(secret, MASK)
    text = URL_CREDENTIALS.sub(rf"\g<head>{MASK}@", text)
    return LIBPQ_PASSWORD.sub(rf"\g<head>{MASK}", text)


class Masker:
    """Masks credentials in text: known secrets in every form, and any URL or DSN password.

    An edge builds one per run and adds secrets as it learns them (the URL, the
    Secrets Manager password); everything it prints, raises or logs goes through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Mask these secrets too, in every encoding.

        The set is replaced, never changed in place: threads that learn secrets (a fleet's targets
        looked at together) never change it under another that is masking."""
        forms = {
            form
            for secret in secrets
            for decoded in (secret, unquote(secret))
            for form in (decoded, quote(decoded, safe=""), quote_plus(decoded, safe=""), quote(decoded))
        }
        self.secrets = (self.secrets | forms) - {""}

    def add_url(self, url: str | None) -> None:
        """Mask the passwords a URL or DSN holds (even a malformed one)."""
        if url:
            self.secrets = self.secrets | set(url_secrets(url))

    def __call__(self, text: str) -> str:
        return mask_credentials(text, secrets=self.secrets)

    @overload
    def error(self, exc: MigrationError) -> MigrationError: ...
    @overload
    def error(self, exc: Exception) -> Exception: ...
    def error(self, exc: Exception) -> Exception:
        """``exc`` with its text masked, to raise or print in its place.

        A MigrationError is masked in place (message, hint, statement, details); any
        other exception whose text holds a secret becomes a RuntimeError with the
        masked text, its cause dropped.
        """
        if isinstance(exc, MigrationError):
            exc.message = self(exc.message)
            exc.args = (exc.message,)
            exc.hint = self(exc.hint) if exc.hint else exc.hint
            exc.statement = self(exc.statement) if exc.statement else exc.statement
            exc.details = {key: self(v) if isinstance(v, str) else v for key, v in exc.details.items()}
            return exc
        text = str(exc)
        if self(text) == text:
            return exc
        masked = RuntimeError(f"{type(exc).__name__}: {self(text)}")
        masked.__suppress_context__ = True
        return masked
