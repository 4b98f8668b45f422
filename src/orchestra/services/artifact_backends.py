"""The artifact store the settings name (ORCHESTRA_ARTIFACTS_URL): a folder or an S3 bucket."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestra.errors import InvalidInput
from orchestra.services.artifact_store import ArtifactStore, FileStore
from orchestra.settings import Settings


def store_of(settings: Settings) -> ArtifactStore:
    """The store ORCHESTRA_ARTIFACTS_URL names (default: <data_dir>/artifacts)."""
    url = settings.artifacts_url
    if not url:
        return FileStore(settings.data_dir / "artifacts")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise InvalidInput("ORCHESTRA_ARTIFACTS_URL: file:///PATH (an absolute path)")
        return FileStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidInput("ORCHESTRA_ARTIFACTS_URL: s3://BUCKET/PREFIX")
        from orchestra.services.artifact_s3 import S3Store  # boto3 is loaded only for S3

        return S3Store(parts.netloc, parts.path.strip("/"), settings.s3_endpoint_url or None)
    raise InvalidInput("ORCHESTRA_ARTIFACTS_URL must be file:///PATH or s3://BUCKET/PREFIX")
