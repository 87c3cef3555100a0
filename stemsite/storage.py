"""Builds the STORAGES entry: the local media folder by default, a private S3 bucket when one is named."""

from django.core.exceptions import ImproperlyConfigured

MB = 1024 * 1024
ADDRESSING_STYLES = ("auto", "path", "virtual")
# SigV4 presigned URLs live at most seven days.
MAX_URL_SECONDS = 7 * 24 * 3600
STATICFILES = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}


def storages_config(
    bucket: str = "",
    endpoint_url: str = "",
    region: str = "",
    addressing_style: str = "",
    url_seconds: int = 300,
) -> dict:
    """Local disk unless `bucket` is set; credentials come from boto3's usual chain (AWS_* variables,
    a profile, an instance role), never from here."""
    if not bucket:
        default = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    else:
        default = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_options(bucket, endpoint_url, region, addressing_style, url_seconds),
        }
    return {"default": default, "staticfiles": STATICFILES}


def s3_options(bucket: str, endpoint_url: str, region: str, addressing_style: str, url_seconds: int) -> dict:
    if addressing_style and addressing_style not in ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"STEMSITE_S3_ADDRESSING_STYLE must be one of {', '.join(ADDRESSING_STYLES)}, "
            f"not {addressing_style!r}."
        )
    if not 1 <= url_seconds <= MAX_URL_SECONDS:
        raise ImproperlyConfigured(
            f"STEMSITE_S3_URL_SECONDS must be between 1 and {MAX_URL_SECONDS} (seven days), "
            f"not {url_seconds}."
        )
    from boto3.s3.transfer import TransferConfig

    # An upload goes up in 8 MB parts, two at a time, with few parts read ahead (boto3's default
    # reads up to ten parts ahead, 80 MB): about 30 MB was held for a 100 MB upload (tests/test_s3.py).
    transfer = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=2)
    transfer.max_in_memory_upload_chunks = 2
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url or None,
        "region_name": region or None,
        # A local or self-hosted endpoint rarely has a wildcard DNS name per bucket.
        "addressing_style": addressing_style or ("path" if endpoint_url else "auto"),
        "signature_version": "s3v4",
        # No ACL header: objects stay as private as the bucket; downloads are presigned URLs.
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": url_seconds,
        # Like the local folder: a name already taken gets a suffix, never a silent overwrite.
        "file_overwrite": False,
        # Reading a stored file (a worker fetching its input) spills to a temporary file past 1 MB.
        "max_memory_size": 1 * MB,
        "transfer_config": transfer,
    }
