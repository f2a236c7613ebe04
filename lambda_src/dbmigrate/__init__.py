"""dbmigrate: PostgreSQL schema migrations from a folder or an S3 bucket.

The engine knows no AWS and no Lambda event shapes: it runs the same in the Lambda
handler, the CLI and the tests. Start at ``runner.Runner``.
"""

from __future__ import annotations

__version__ = "0.1.0"
