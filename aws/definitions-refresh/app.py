"""Refreshes airlock's private ClamAV definitions mirror.

Runs ClamAV's own mirror tool, cvdupdate, on a schedule and keeps the result in the mirror
bucket: the databases under ``database/`` (``main.cvd``, ``daily.cvd``, ``bytecode.cvd`` and
the patch files cvdupdate keeps) and cvdupdate's state under ``cvdupdate/state.json``. The
state and the current databases are restored before each run, so cvdupdate downloads only
what changed (patches, or a database whose version moved) and honours ClamAV's retry-after
answers across runs. The scanners load from the bucket, never from ClamAV's CDN.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from cvdupdate.cvdupdate import CVDUpdate

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

DATABASE_PREFIX = "database/"
STATE_KEY = "cvdupdate/state.json"
# Lambda's /tmp survives between warm invocations; files already there are kept when they
# match the bucket.
WORK = Path("/tmp/cvdupdate")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _restore(s3, bucket: str, db_dir: Path, state_file: Path) -> dict:
    """Copies the mirror into db_dir and the saved state to state_file; returns the
    SHA-256 of every database file as restored, to tell later which ones changed."""
    try:
        s3.download_file(bucket, STATE_KEY, str(state_file))
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("404", "NoSuchKey"):
            raise
        LOG.info("no saved cvdupdate state in s3://%s/%s: starting a new mirror", bucket, STATE_KEY)
    restored = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=DATABASE_PREFIX):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(DATABASE_PREFIX):]
            if not name or "/" in name:
                continue
            local = db_dir / name
            if not (local.exists() and local.stat().st_size == obj["Size"]):
                s3.download_file(bucket, obj["Key"], str(local))
            restored[name] = _sha256(local)
    return restored


def handler(event, context):
    bucket = os.environ["AIRLOCK_DEFINITIONS_BUCKET"]
    s3 = boto3.client("s3")
    db_dir = WORK / "database"
    log_dir = WORK / "logs"
    for d in (db_dir, log_dir):
        d.mkdir(parents=True, exist_ok=True)
    config_file = WORK / "config.json"
    state_file = WORK / "state.json"
    # cvdupdate writes its default config (naming these directories, and state.json beside
    # it) when there is none; the config is made afresh, the state is what persists.
    config_file.unlink(missing_ok=True)

    restored = _restore(s3, bucket, db_dir, state_file)
    updater = CVDUpdate(config=str(config_file), log_dir=str(log_dir), db_dir=str(db_dir))
    errors = updater.db_update()

    uploaded = []
    for path in sorted(db_dir.iterdir()):
        if path.is_file() and restored.get(path.name) != _sha256(path):
            s3.upload_file(str(path), bucket, DATABASE_PREFIX + path.name)
            uploaded.append(path.name)
    # The state goes last: it records versions that are in the bucket by now.
    if state_file.exists():
        s3.upload_file(str(state_file), bucket, STATE_KEY)

    LOG.info("definitions mirror refreshed: %d errors, uploaded %s", errors, uploaded or "nothing")
    if errors:
        # Fails the invocation, so the errors alarm sees it; what did update is kept.
        raise RuntimeError(f"cvdupdate reported {errors} failed database updates; uploaded {uploaded}")
    return {"uploaded": uploaded}
