"""The four buckets of a gtseg deployment, and the optional customer-managed KMS key.

- data: input images, manifests and label-category files the launcher writes (read by workers'
  browsers: CORS).
- output: Ground Truth's job output and our consolidated masks (prior masks of adjustment jobs are
  shown in the browser: CORS).
- assets: the worker template and default label-category file (read by Ground Truth only: no CORS;
  a separate bucket so BucketDeployment's prune can never touch user data).
- access logs: server access logs of the other three (SSE-S3 only: log delivery cannot use KMS).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.settings import Encryption, GtsegSettings

# Ground Truth's CORS requirement (protocol doc §9.3): without it, tasks on those objects fail.
# HEAD too: browsers and the worker UI probe images before drawing them.
WORKER_UI_CORS = s3.CorsRule(
    allowed_methods=[s3.HttpMethods.GET, s3.HttpMethods.HEAD],
    allowed_origins=["*"],
    exposed_headers=["Access-Control-Allow-Origin"],
)
INCOMPLETE_UPLOAD_DAYS = 7
NONCURRENT_VERSION_DAYS = 90  # overwritten manifests/masks stay recoverable this long
ACCESS_LOG_DAYS = 365


class Storage(Construct):
    """Buckets with encryption, TLS-only, no public access, versioning and access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: GtsegSettings) -> None:
        super().__init__(scope, construct_id)
        removal = settings.removal_policy
        auto_delete = settings.destroy_on_delete

        self.encryption_key: kms.IKey | None = None
        if settings.encryption is Encryption.KMS:
            if settings.kms_key_arn:
                # An existing key: its key policy must let this account's IAM policies use it.
                self.encryption_key = kms.Key.from_key_arn(self, "ImportedKey", settings.kms_key_arn)
            else:
                self.encryption_key = kms.Key(
                    self,
                    "Key",
                    description=f"gtseg {settings.stage}: labeling data, output and assets",
                    enable_key_rotation=True,
                    removal_policy=removal,
                    pending_window=Duration.days(7) if auto_delete else None,
                )

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(ACCESS_LOG_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(INCOMPLETE_UPLOAD_DAYS),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.data_bucket = self._data_bucket("DataBucket", "data/", cors=True, settings=settings)
        self.output_bucket = self._data_bucket("OutputBucket", "output/", cors=True, settings=settings)
        self.assets_bucket = self._data_bucket("AssetsBucket", "assets/", cors=False, settings=settings)

    @property
    def buckets(self) -> tuple[s3.Bucket, ...]:
        return (self.data_bucket, self.output_bucket, self.assets_bucket, self.access_log_bucket)

    def _data_bucket(
        self, construct_id: str, log_prefix: str, *, cors: bool, settings: GtsegSettings
    ) -> s3.Bucket:
        kms_encrypted = self.encryption_key is not None
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS if kms_encrypted else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.encryption_key,
            # S3 Bucket Keys cut KMS request costs ~99% for the many small mask/manifest objects.
            bucket_key_enabled=kms_encrypted or None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix=log_prefix,
            cors=[WORKER_UI_CORS] if cors else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tidy-uploads-and-old-versions",
                    abort_incomplete_multipart_upload_after=Duration.days(INCOMPLETE_UPLOAD_DAYS),
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                )
            ],
            removal_policy=settings.removal_policy,
            auto_delete_objects=settings.destroy_on_delete,
        )
