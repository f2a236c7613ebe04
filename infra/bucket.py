"""The migrations bucket and its objects: one object per migration file of the repository.

The bucket is private (public access blocked, ACLs disabled, TLS-only policy),
versioned and encrypted with the stack's key. Objects are laid out as
``<prefix><database>/<file>``, exactly as in the repository's ``migrations/`` folder,
and carry the file's sha256 so an edited file shows in ``terraform plan``. Beside them,
under ``<prefix>.dbmigrate/bundle/``, the same bodies packed into a few parts and an
index of them (``dbmigrate.bundle``), so that a first deploy reads a few objects.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdktf import AssetType, ITerraformDependable, TerraformAsset
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from cdktf_cdktf_provider_aws.s3_object import S3Object
from constructs import Construct

from dbmigrate import bundle
from dbmigrate.manifest import manifest_of
from dbmigrate.sources import LocalSource

from . import policies

__all__ = ["MigrationFile", "MigrationObjects", "MigrationsBucket", "migration_files"]

NONCURRENT_VERSION_DAYS = 90


@dataclass(frozen=True)
class MigrationFile:
    """One file to upload: its key below the migrations folder and its content hash."""

    key: str
    sha256: str


def migration_files(folder: Path) -> list[MigrationFile]:
    """Every up and down file of the folder, validated by the engine's own layout rules.

    A misnamed file fails the synth with the engine's message naming it, so a file the
    function would refuse never reaches the bucket.
    """
    files = [MigrationFile(item["file"], item["sha256"]) for item in manifest_of(LocalSource(folder))]
    return sorted(files, key=lambda item: item.key)


class MigrationsBucket(Construct):
    """A private, versioned, KMS-encrypted bucket for the migration files.

    Only ``writers`` (the deploying principal and the uploaders the user lists) may
    write or delete under ``prefix``; the bucket policy denies it to everyone else.
    Attributes: ``name``, ``arn``, ``policy`` (write the objects after it).
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self, scope: Construct, id: str, *, name: str, kms_key_arn: str, prefix: str, writers: Sequence[str]
    ) -> None:
        super().__init__(scope, id)
        bucket = S3Bucket(self, "bucket", bucket_prefix=f"{name}-migrations-", force_destroy=False)
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        S3BucketPublicAccessBlock(
            self,
            "public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketVersioningA(
            self,
            "versioning",
            bucket=bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
        )
        S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="old-versions-and-partial-uploads",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=NONCURRENT_VERSION_DAYS
                        )
                    ],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)
                    ],
                )
            ],
        )
        self.policy = S3BucketPolicy(
            self,
            "policy",
            bucket=bucket.id,
            policy=policies.migrations_bucket_policy(bucket_arn=bucket.arn, prefix=prefix, writers=writers),
        )
        self.name = bucket.id
        self.arn = bucket.arn


class MigrationObjects(Construct):
    """One ``aws_s3_object`` per migration file, at ``<prefix><database>/<file>``, and the files' bundle.

    The folder is copied into the synthesized stack as an asset (named by the hash of
    its migration files, so the output does not depend on where the repository lives).
    Each object is uploaded with a SHA-256 checksum, which S3 checks and reports back.
    The bundle (``dbmigrate.bundle``): the bodies packed into parts (an asset of their own),
    and an index written after every upload, naming each object by the ETag and checksum
    Terraform read back from it.
    ``after``: what must be in place first: the bucket policy that admits the deployer, and
    the function, whose environment says whose uploads are the deploy's own.
    Attributes: ``objects`` (the files', for ordering) and ``files``.
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self,
        scope: Construct,
        id: str,
        *,
        folder: Path,
        bucket_name: str,
        prefix: str,
        kms_key_arn: str,
        files: Sequence[MigrationFile],
        after: Sequence[ITerraformDependable] = (),
    ) -> None:
        super().__init__(scope, id)
        content = hashlib.sha256("".join(f"{item.key}\0{item.sha256}\n" for item in files).encode()).hexdigest()
        asset = TerraformAsset(self, "files", path=str(folder), type=AssetType.DIRECTORY, asset_hash=content[:32])
        encrypted: dict[str, Any] = {
            "server_side_encryption": "aws:kms",
            "kms_key_id": kms_key_arn,
            "bucket_key_enabled": True,
        }
        self.objects = []
        for item in files:
            database, file_name = item.key.split("/")
            version = file_name.split("_", 1)[0]
            direction = "down" if file_name.endswith(".down.sql") else "up"
            self.objects.append(
                S3Object(
                    self,
                    f"{database}-{version}-{direction}",
                    bucket=bucket_name,
                    key=f"{prefix}{item.key}",
                    source=f"{asset.path}/{item.key}",
                    source_hash=item.sha256,
                    content_type="application/sql; charset=utf-8",
                    checksum_algorithm="SHA256",
                    depends_on=list(after) or None,
                    **encrypted,
                )
            )
        self.files = tuple(files)
        if files:
            self._bundle(folder, bucket_name, prefix, encrypted, after)

    def _bundle(
        self,
        folder: Path,
        bucket_name: str,
        prefix: str,
        encrypted: dict[str, Any],
        after: Sequence[ITerraformDependable],
    ) -> None:
        """The parts, from a folder written here (removed when the synth's process ends), then the index."""
        parts, placed = bundle.pack([(item.key, (folder / item.key).read_bytes()) for item in self.files])
        written = Path(tempfile.mkdtemp(prefix="dbmigrate-bundle-"))
        atexit.register(shutil.rmtree, written, ignore_errors=True)
        digests = [hashlib.sha256(part.body).hexdigest() for part in parts]
        for part in parts:
            (written / part.key).parent.mkdir(parents=True, exist_ok=True)
            (written / part.key).write_bytes(part.body)
        asset = TerraformAsset(
            self,
            "bundle-parts",
            path=str(written),
            type=AssetType.DIRECTORY,
            asset_hash=hashlib.sha256("".join(digests).encode()).hexdigest()[:32],
        )
        part_objects = [
            S3Object(
                self,
                # Named for its folder and number there: a file added to another folder moves nothing here.
                "bundle-" + part.key.removeprefix(bundle.FOLDER).replace("/", "-"),
                bucket=bucket_name,
                key=f"{prefix}{part.key}",
                source=f"{asset.path}/{part.key}",
                source_hash=digest,
                content_type="application/octet-stream",
                depends_on=list(after) or None,
                **encrypted,
            )
            for part, digest in zip(parts, digests, strict=True)
        ]
        by_file = dict(zip((item.key for item in self.files), self.objects, strict=True))
        S3Object(
            self,
            "bundle-index",
            bucket=bucket_name,
            key=f"{prefix}{bundle.INDEX_KEY}",
            content=bundle.index_text(
                placed,
                [bundle.Part(part.key, obj.etag) for part, obj in zip(parts, part_objects, strict=True)],
                {file: obj.etag for file, obj in by_file.items()},
                {file: obj.checksum_sha256 for file, obj in by_file.items()},
            ),
            content_type="application/x-ndjson",
            depends_on=list(after) or None,
            **encrypted,
        )
