"""Storage failures a user can be told about in a sentence, on the local folder and on an S3 bucket.

Anything else raised while reading or writing files is a server bug: a traceback in the log and
the generic message.
"""

import errno

from botocore.exceptions import BotoCoreError, ClientError

FULL = "full"
READ_ONLY = "read_only"
UNREACHABLE = "unreachable"

# What a storage call may raise: the local folder's OSError, or botocore's for a bucket.
STORAGE_EXCEPTIONS = (OSError, BotoCoreError, ClientError)

_ERRNOS = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EFBIG: FULL, errno.EROFS: READ_ONLY}
# A bucket that answers "no such key" is reachable: a file is missing, which is a server bug.
_MISSING = {"404", "NoSuchKey", "NotFound"}


def storage_problem(error: BaseException) -> str | None:
    """FULL, READ_ONLY or UNREACHABLE (the bucket refused or could not be reached), else None."""
    if isinstance(error, OSError):
        return _ERRNOS.get(error.errno)
    if isinstance(error, ClientError):
        return None if str(error.response.get("Error", {}).get("Code")) in _MISSING else UNREACHABLE
    if isinstance(error, BotoCoreError):
        return UNREACHABLE
    return None
