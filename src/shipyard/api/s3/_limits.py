"""S3's limits, as AWS sets them, enforced while a request is read (never after buffering it).

Module constants, read at each request, so a test can lower them.
"""

from __future__ import annotations

GIB = 1024**3

MAX_PUT_SIZE = 5 * GIB  # PutObject's body (EntityTooLarge)
MAX_PART_SIZE = 5 * GIB  # UploadPart's body (EntityTooLarge)
MAX_COPY_SIZE = 5 * GIB  # CopyObject's source (InvalidRequest)
MAX_PART_NUMBER = 10_000  # part numbers are 1..MAX_PART_NUMBER
MAX_PARTS = 10_000  # parts one CompleteMultipartUpload may list
MAX_XML_BODY = 8 * 1024 * 1024  # a request document (10,000 parts with their checksums fit)
MAX_DELETE_KEYS = 1000  # keys one DeleteObjects may name
MAX_KEYS = 1000  # keys (or uploads, or parts) one listing answers
