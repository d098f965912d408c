"""ONESTOP_DOCUMENT_STORE: the data dir by default, an S3 bucket (and prefix) when set; nonsense fails fast."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError, load_settings, parse_s3_url

BASE = {
    "ONESTOP_CENTER": "210200",
    "ONESTOP_DATABASE_URL": "sqlite+aiosqlite:///intake.sqlite",
    "ONESTOP_NATS_URL": "nats://127.0.0.1:4222",
}


@pytest.mark.parametrize("raw", [None, "", "local", " local "])
def test_documents_stay_in_the_data_dir_unless_a_store_is_named(raw: str | None) -> None:
    env = BASE if raw is None else BASE | {"ONESTOP_DOCUMENT_STORE": raw}
    settings = load_settings(service="intake", env=env)
    assert (settings.document_store, settings.s3_addressing_style) == ("local", "auto")


@pytest.mark.parametrize(
    ("raw", "url", "bucket", "prefix"),
    [
        ("s3://onestop-docs", "s3://onestop-docs", "onestop-docs", ""),
        ("s3://onestop-docs/", "s3://onestop-docs", "onestop-docs", ""),
        (
            "s3://onestop-docs/210200/documents/",
            "s3://onestop-docs/210200/documents",
            "onestop-docs",
            "210200/documents",
        ),
    ],
)
def test_an_s3_store_names_its_bucket_and_prefix(raw: str, url: str, bucket: str, prefix: str) -> None:
    settings = load_settings(service="intake", env=BASE | {"ONESTOP_DOCUMENT_STORE": raw})
    assert settings.document_store == url
    assert parse_s3_url(settings.document_store) == (bucket, prefix)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("/var/lib/onestop/documents", "must be 'local' or s3://bucket"),
        ("https://minio:9000/docs", "must be 'local' or s3://bucket"),
        ("s3://", "no valid S3 bucket"),
        ("s3://Onestop_Docs/x", "no valid S3 bucket"),
    ],
)
def test_a_store_that_is_not_local_or_an_s3_bucket_is_refused(raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings(service="intake", env=BASE | {"ONESTOP_DOCUMENT_STORE": raw})


def test_the_addressing_style_is_one_botocore_knows() -> None:
    env = BASE | {"ONESTOP_DOCUMENT_STORE": "s3://onestop-docs", "ONESTOP_S3_ADDRESSING_STYLE": "Path"}
    assert load_settings(service="intake", env=env).s3_addressing_style == "path"
    with pytest.raises(SettingsError, match="ONESTOP_S3_ADDRESSING_STYLE must be one of"):
        load_settings(service="intake", env=env | {"ONESTOP_S3_ADDRESSING_STYLE": "dns"})
