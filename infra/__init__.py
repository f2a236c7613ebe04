"""The infrastructure, synthesized by cdktf: the only place cdktf is imported.

``infra.database_migrations.DatabaseMigrations`` is the reusable construct; ``infra.stack`` the
example stack that ``main.py`` synthesizes; ``infra.packaging`` builds the Lambda zip.
Nothing is imported here, so ``python -m infra.packaging`` does not load cdktf.
"""
