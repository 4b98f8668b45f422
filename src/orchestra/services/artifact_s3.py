"""Artifacts in an S3-compatible object store (docs/artifacts.md): objects PREFIX/RUN/PATH, an
upload staged as a multipart upload of that key (one part per chunk), boto3's calls made in
threads. Credentials and region come from the usual AWS_* variables."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestra.errors import InvalidInput, NotFound, Unavailable
from orchestra.services.artifact_store import (
    READ_SIZE,
    ArtifactStore,
    BadChunk,
    Chunk,
    Upload,
)

DELETE_BATCH = 1000  # keys in one DeleteObjects


class S3Store(ArtifactStore):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.description = f"s3://{bucket}/{self.prefix}"
        config = Config(
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,
        )
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=config
        )

    def _key(self, run: str, path: str) -> str:
        return f"{self.prefix}{run}/{path}"

    async def _call(self, name: str, **arguments: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, name), **arguments)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchUpload"):
                raise NotFound(f"not in the artifact store ({code})") from None
            raise Unavailable(f"the artifact store answered {code or exc}") from None
        except BotoCoreError as exc:
            raise Unavailable(f"the artifact store cannot be reached: {exc}") from None

    async def begin(self, upload: Upload) -> None:
        answer = await self._call(
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=self._key(upload.run, upload.path),
            ContentType="application/octet-stream",
        )
        upload.store_upload = answer["UploadId"]
        upload.parts = []

    async def write(self, upload: Upload, offset: int, chunk: Chunk) -> None:  # noqa: ARG002
        # A part needs its length and bytes at once (its checksum is sent first): the chunk is
        # gathered (at most 16 MiB), checked, and sent.
        pieces: list[bytes] = []
        async for piece in chunk.pieces:
            pieces.append(piece)
        body = b"".join(pieces)
        pieces.clear()
        await asyncio.to_thread(chunk.feed, body)
        if len(body) != chunk.length or not chunk.accept():
            raise BadChunk("the chunk's SHA-256 (X-Chunk-SHA256) does not match its bytes")
        number = len(upload.parts) + 1
        answer = await self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=self._key(upload.run, upload.path),
            UploadId=upload.store_upload,
            PartNumber=number,
            Body=body,
        )
        upload.parts.append([number, answer["ETag"]])

    async def complete(self, upload: Upload, sha256: str | None) -> None:
        key = self._key(upload.run, upload.path)
        if not upload.parts:
            # A multipart upload needs a part: an empty file is put whole.
            await self._call("put_object", Bucket=self.bucket, Key=key, Body=b"")
            await self.discard(upload)
        else:
            await self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload.store_upload,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in upload.parts]
                },
            )
        if sha256 is not None:
            digest = hashlib.sha256()
            async for piece in self._read_key(key, 0, None):
                digest.update(piece)
            if digest.hexdigest() != sha256:
                await self._call("delete_object", Bucket=self.bucket, Key=key)
                raise InvalidInput("the file's SHA-256 does not match the one declared")

    async def discard(self, upload: Upload) -> None:
        if upload.store_upload is None:
            return
        try:
            await self._call(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self._key(upload.run, upload.path),
                UploadId=upload.store_upload,
            )
        except NotFound:
            pass

    def read(self, run: str, path: str, start: int, length: int) -> AsyncIterator[bytes]:
        return self._read_key(self._key(run, path), start, length)

    async def _read_key(self, key: str, start: int, length: int | None) -> AsyncIterator[bytes]:
        if length == 0:
            return
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            arguments["Range"] = f"bytes={start}-{end}"
        answer = await self._call("get_object", **arguments)
        body = answer["Body"]
        try:
            while True:
                try:
                    piece = await asyncio.to_thread(body.read, READ_SIZE)
                except BotoCoreError as exc:
                    raise Unavailable(f"the artifact store stopped answering: {exc}") from None
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    async def delete(self, run: str, path: str) -> None:
        await self._call("delete_object", Bucket=self.bucket, Key=self._key(run, path))

    async def delete_runs(self, runs: list[str]) -> None:
        for run in runs:
            prefix = f"{self.prefix}{run}/"
            keys = [o["Key"] async for o in self._listed("list_objects_v2", "Contents", prefix)]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                await self._call(
                    "delete_objects",
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            async for found in self._listed("list_multipart_uploads", "Uploads", prefix):
                await self.discard(
                    Upload(run, found["Key"][len(prefix) :], "", store_upload=found["UploadId"])
                )

    async def stored_runs(self) -> list[str]:
        found: set[str] = set()
        async for common in self._listed(
            "list_objects_v2", "CommonPrefixes", self.prefix, delimiter="/"
        ):
            found.add(common["Prefix"][len(self.prefix) :].rstrip("/"))
        async for upload in self._listed("list_multipart_uploads", "Uploads", self.prefix):
            found.add(upload["Key"][len(self.prefix) :].split("/", 1)[0])
        return sorted(found)

    async def _listed(
        self, operation: str, field: str, prefix: str, delimiter: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a listing, page after page."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            arguments["Delimiter"] = delimiter
        while True:
            page = await self._call(operation, **arguments)
            for item in page.get(field, []) or []:
                yield item
            if operation == "list_objects_v2":
                if not page.get("IsTruncated"):
                    return
                arguments["ContinuationToken"] = page["NextContinuationToken"]
            else:
                if not page.get("IsTruncated"):
                    return
                arguments["KeyMarker"] = page.get("NextKeyMarker")
                arguments["UploadIdMarker"] = page.get("NextUploadIdMarker")

    async def close(self) -> None:
        self.client.close()
