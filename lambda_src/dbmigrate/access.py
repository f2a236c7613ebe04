"""What the connected role may do with a database's history: checked before anything runs.

One query reads the session's state from the catalogs (which every role may read):
read-only or a hot standby, CREATE on the database, USAGE and CREATE on the history
schema, and the history table's privileges. ``Access.refusal()`` turns a missing
privilege into a PrivilegeError naming the database, the role, the privilege and the
GRANT that fixes it, instead of a server error halfway through a run (or a plan that
reports every file pending on a database the role cannot even read).
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import Connection
from .errors import PrivilegeError

__all__ = ["Access", "check_access"]

PROBE = """
SELECT current_user,
       current_database(),
       current_setting('transaction_read_only') = 'on',
       pg_is_in_recovery(),
       has_database_privilege(current_database(), 'CREATE'),
       n.oid IS NOT NULL,
       n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE'),
       n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'),
       c.oid IS NOT NULL,
       c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT'),
       c.oid IS NOT NULL AND has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE')
          AND has_table_privilege(c.oid, 'DELETE')
FROM (SELECT 1) AS one
LEFT JOIN pg_namespace AS n ON n.nspname = %(schema)s
LEFT JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = 'history'
"""


@dataclass(frozen=True)
class Access:
    """The connected role's standing on one database's history schema and table."""

    role: str
    database: str
    schema: str
    read_only: bool
    standby: bool
    create_on_database: bool
    schema_exists: bool
    schema_usage: bool
    schema_create: bool
    table_exists: bool
    table_select: bool
    table_write: bool

    def refusal(self, *, write: bool) -> PrivilegeError | None:
        """Why the history cannot be read (or, with ``write``, written), or None."""
        reason = self._read_refusal() or (self._write_refusal() if write else None)
        if reason is None:
            return None
        message, privilege, hint = reason
        return PrivilegeError(
            f"role {self.role!r} {message}",
            database=self.database,
            role=self.role,
            privilege=privilege,
            hint=hint,
        )

    def _read_refusal(self) -> tuple[str, str, str] | None:
        role, schema = _ident(self.role), _ident(self.schema)
        if self.schema_exists and not self.schema_usage:
            return (
                f"has no USAGE privilege on the history schema {self.schema} in database {self.database}",
                "USAGE",
                f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}; (in {self.database}, as the schema's owner)",
            )
        if self.table_exists and not self.table_select:
            return (
                f"may not read the history table {self.schema}.history in database {self.database}",
                "SELECT",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.history TO {role};",
            )
        return None

    def _write_refusal(self) -> tuple[str, str, str] | None:
        role, schema, database = _ident(self.role), _ident(self.schema), _ident(self.database)
        if self.standby:
            return (
                f"is connected to a hot standby (a read-only replica) for database {self.database}",
                "a writable session",
                "point the URL (or DB_HOST) at the primary server, not at a replica",
            )
        if self.read_only:
            return (
                f"has a read-only session on database {self.database} (default_transaction_read_only is on)",
                "a writable session",
                f"ALTER ROLE {role} IN DATABASE {database} SET default_transaction_read_only = off; "
                "(or reset it where it was set, with ALTER DATABASE or ALTER ROLE ... RESET)",
            )
        if not self.schema_exists and not self.create_on_database:
            return (
                f"may not create the history schema {self.schema} in database {self.database} "
                "(no CREATE privilege on the database)",
                "CREATE",
                f"GRANT CREATE ON DATABASE {database} TO {role}; (or, as an owner of {self.database}: "
                f"CREATE SCHEMA {schema} AUTHORIZATION {role};)",
            )
        if self.schema_exists and not self.table_exists and not self.schema_create:
            return (
                f"may not create the history table in schema {self.schema} in database {self.database} "
                "(no CREATE privilege on the schema)",
                "CREATE",
                f"GRANT CREATE ON SCHEMA {schema} TO {role};",
            )
        if self.table_exists and not self.table_write:
            return (
                f"may not write the history table {self.schema}.history in database {self.database}",
                "INSERT, UPDATE, DELETE",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.history TO {role};",
            )
        return None


def check_access(conn: Connection, schema: str) -> Access:
    """Read the role's standing on ``schema`` and its history table (one round trip)."""
    with conn.cursor() as cur:
        cur.execute(PROBE, {"schema": schema})
        row = cur.fetchone()
    assert row is not None  # a SELECT over (SELECT 1) always returns its row
    role, database, *flags = row
    return Access(str(role), str(database), schema, *(bool(flag) for flag in flags))


def _ident(name: str) -> str:
    """A name as SQL writes it: quoted when it needs quotes."""
    plain = name.isidentifier() and name == name.lower() and name.isascii()
    return name if plain else '"' + name.replace('"', '""') + '"'
