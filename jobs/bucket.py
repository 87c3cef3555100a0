"""The S3 bucket's CORS rule: the in-page mixer fetches stems, and a redirect to the bucket is cross-origin.

Downloads and the player follow the site's redirect to a presigned URL; a page's `fetch` may only
read that answer if the bucket allows the site's origin. Everything else about the bucket stays
private: the rule grants reading to browsers that already hold a presigned URL, nothing more.
"""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from storages.backends.s3 import S3Storage


def site_origin(base_url: str) -> str:
    """`https://stems.example.org` from `https://stems.example.org/any/path`."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(f"STEMSITE_BASE_URL must be an http(s) address, not {base_url!r}.")
    return f"{parts.scheme}://{parts.netloc}"


def cors_rules(origins: list[str]) -> list[dict]:
    return [
        {
            "AllowedOrigins": origins,
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedHeaders": ["Range"],
            "ExposeHeaders": ["Content-Length", "Content-Range", "Accept-Ranges", "Content-Disposition"],
            "MaxAgeSeconds": 3600,
        }
    ]


def set_cors(storage: Storage, origins: list[str]) -> list[dict]:
    """Replace the bucket's CORS configuration with the rule for `origins`; returns the rules set."""
    if not isinstance(storage, S3Storage):
        raise ImproperlyConfigured("Files are on local disk: set STEMSITE_S3_BUCKET to use a bucket.")
    rules = cors_rules(origins)
    storage.connection.meta.client.put_bucket_cors(
        Bucket=storage.bucket_name, CORSConfiguration={"CORSRules": rules}
    )
    return rules
