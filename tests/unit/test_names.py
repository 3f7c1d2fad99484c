import pytest

from shipyard.errors import InvalidBucketName, InvalidObjectKey
from shipyard.storage import validate_bucket_name, validate_key


@pytest.mark.parametrize("key", ["", "x" * 1025, "é" * 513, "a\ud800b"])
def test_keys_s3_would_refuse_are_refused_with_the_key_named(key: str) -> None:
    with pytest.raises(InvalidObjectKey) as info:
        validate_key(key)
    assert info.value.field == "Key"
    assert repr(key[:20])[1:-1][:10] in info.value.message


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "train/data.csv",
        "folder/",
        "a..b",
        "...x",
        "spaces are fine.txt",
        "ünïcödé/ключ",
        "a%2e%2e/b",
        # S3 stores these as the text they are; the local store keeps them inside their bucket.
        "../etc/passwd",
        "a/../../b",
        "/abs/path",
        "a/./b",
        "a//b",
        "..",
        ".",
        "a\x00b",
        "a\nb",
        "x" * 1024,
        "a/" + "y" * 1000,
    ],
)
def test_every_key_s3_accepts_passes(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("bucket", ["ab", "UPPER", "-start", "end-", "a..b", "192.168.1.1", "a_b", "x" * 64])
def test_bad_bucket_names(bucket: str) -> None:
    with pytest.raises(InvalidBucketName, match="Invalid bucket name"):
        validate_bucket_name(bucket)


def test_good_bucket_names() -> None:
    for bucket in ["abc", "sagemaker-us-east-1-000000000000", "my.bucket.name", "a1b"]:
        assert validate_bucket_name(bucket) == bucket
