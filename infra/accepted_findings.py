"""checkov findings we accept on purpose, each with its reason (one line).

checkov cannot read skip comments in Terraform JSON, so the infra tests run it on the
synthesized stack and count a failed check as skipped only when it is listed here for
that resource type; anything else fails the tests, and so does an entry that no longer
matches a finding.
"""

from __future__ import annotations

__all__ = ["ACCEPTED_FINDINGS"]

ACCEPTED_FINDINGS: dict[tuple[str, str], str] = {
    ("CKV_AWS_18", "aws_s3_bucket"): (
        "the bucket only holds migration files that Terraform writes; access is audited with CloudTrail, "
        "and a log bucket would need a log bucket of its own"
    ),
    ("CKV_AWS_144", "aws_s3_bucket"): (
        "the repository is the source of the files and every apply uploads them again; a replica adds nothing"
    ),
    ("CKV_AWS_115", "aws_lambda_function"): (
        "no reserved concurrency by default: Lambda refuses any reservation on accounts limited to 10, and "
        "overlapping runs queue on the engine's advisory lock; set reserved_concurrency to reserve"
    ),
    ("CKV_AWS_272", "aws_lambda_function"): (
        "the package is built reproducibly from the repository and pinned by source_code_hash; "
        "code signing needs an AWS Signer profile, outside this example"
    ),
    ("CKV_AWS_394", "aws_availability_zones"): (
        "only the first two zones are used (element 0 and 1 of the sorted names); a zone added later does not move them"
    ),
}
