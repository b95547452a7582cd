"""The Space's Sequence store (space-api.md S14–S17): packages on disk under the data dir,
their metadata in SQL. Uploads are streamed to a temporary file (never held in memory),
capped in size, and accepted only if they are a gzip tar with a package.json.

Two caps apply: MANAGER_STORE_MAX_BYTES to each package, and the plan's store bytes per
Space to the Space's total. The quota is checked in the transaction that records the
package, before the file takes its final name, so a refused upload changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.common import now_ms
from manager.db import repo
from manager.db.models import StoredSequence
from manager.services import plans
from manager.services.errors import Invalid, LimitExceeded, NotFound, TooLarge, Unprocessable

_SEQ_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$")
MAX_MANIFEST = 1024 * 1024


def read_manifest(path: Path) -> dict[str, Any]:
    """package.json of a Sequence package (at the archive root or one folder down)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            best: tarfile.TarInfo | None = None
            for member in tar:
                name = member.name.lstrip("./")
                depth = name.count("/")
                if not (member.isfile() and depth <= 1 and name.endswith("package.json")):
                    continue
                if best is None or depth < best.name.lstrip("./").count("/"):
                    best = member
            if best is None:
                raise Unprocessable("Not a Sequence package: no package.json")
            if best.size > MAX_MANIFEST:
                raise Unprocessable("Not a Sequence package: package.json is too large")
            handle = tar.extractfile(best)
            assert handle is not None
            manifest = json.loads(handle.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Unprocessable(f"Not a gzip tar package: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable(f"Not a Sequence package: package.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise Unprocessable("Not a Sequence package: package.json is not an object")
    return manifest


def sequence_config(seq_id: str, manifest: dict[str, Any], size: int) -> dict[str, Any]:
    raw_engines = manifest.get("engines")
    engines: dict[str, Any] = raw_engines if isinstance(raw_engines, dict) else {}
    language = "py" if any(str(k).startswith("python") for k in engines) else "js"
    main = manifest.get("main") or ("main.py" if language == "py" else "index.js")
    config: dict[str, Any] = {
        "type": "process",
        "id": seq_id,
        "name": str(manifest.get("name", ""))[:200],
        "version": str(manifest.get("version", ""))[:100],
        "engines": engines,
        "entrypointPath": str(main),
        "language": language,
        "packageSize": size,
    }
    for key in ("description", "author", "keywords", "repository", "args"):
        if key in manifest:
            config[key] = manifest[key]
    return config


class SequenceStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        root: Path,
        max_bytes: int,
        on_refused: Callable[[str], None] | None = None,
    ):
        self.sessions = sessions
        self.root = root
        self.max_bytes = max_bytes
        self.on_refused = on_refused  # counts quota refusals for the metrics

    async def put(
        self, space_id: str, seq_id: str | None, chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        seq_id = seq_id or str(uuid.uuid4())
        if not _SEQ_ID.match(seq_id):
            raise Invalid("A stored Sequence id is 1-200 letters, digits and _ . @ + -")
        folder = self.root / space_id
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".upload-{uuid.uuid4().hex}"
        try:
            async with self.sessions() as s:  # to stop a far too large upload early
                quota, used = await plans.store_room(s, space_id, seq_id)
            size, digest = await self._receive(tmp, chunks, quota, used, space_id)
            if size == 0:
                raise Unprocessable("The package is empty")
            manifest = await asyncio.to_thread(read_manifest, tmp)
            config = sequence_config(seq_id, manifest, size)
            final = folder / f"{seq_id}.tar.gz"
            async with self.sessions() as s, s.begin():
                await repo.lock_space(s, space_id)  # concurrent uploads to a Space take turns
                quota, used = await plans.store_room(s, space_id, seq_id)
                if not quota.allows(used, size):
                    raise self._refused(quota, space_id, used, size)
                row = await self._row(s, space_id, seq_id)
                if row is None:
                    row = StoredSequence(space_id=space_id, seq_id=seq_id, created_ms=now_ms())
                    s.add(row)
                row.name, row.version, row.config = config["name"], config["version"], config
                row.size, row.sha256, row.path = size, digest, str(final)
            # After the commit: a refused or failed write leaves the stored package as it was.
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return config

    def _refused(self, quota: plans.Limit, space_id: str, used: int, size: int) -> LimitExceeded:
        if self.on_refused is not None:
            self.on_refused(plans.STORE)
        return plans.store_refusal(quota, space_id, used, size)

    async def _receive(
        self,
        tmp: Path,
        chunks: AsyncIterator[bytes],
        quota: plans.Limit,
        used: int,
        space_id: str,
    ) -> tuple[int, str]:
        size = 0
        digest = hashlib.sha256()
        with tmp.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise TooLarge(f"Package larger than the store limit of {self.max_bytes} bytes")
                if not quota.allows(used, size):
                    raise self._refused(quota, space_id, used, size)
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
        return size, digest.hexdigest()

    @staticmethod
    async def _row(s: AsyncSession, space_id: str, seq_id: str) -> StoredSequence | None:
        q = select(StoredSequence).where(
            StoredSequence.space_id == space_id, StoredSequence.seq_id == seq_id
        )
        return await s.scalar(q)

    async def list_configs(self, space_id: str) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            q = (
                select(StoredSequence)
                .where(StoredSequence.space_id == space_id)
                .order_by(StoredSequence.created_ms)
            )
            return [dict(r.config) for r in (await s.scalars(q)).all()]

    async def package(self, space_id: str, seq_id: str) -> Path:
        async with self.sessions() as s:
            row = await self._row(s, space_id, seq_id)
        if row is None or not Path(row.path).exists():
            raise NotFound(f"Sequence {seq_id} not found in the store")
        return Path(row.path)

    async def remove(self, space_id: str, seq_id: str) -> None:
        async with self.sessions() as s, s.begin():
            row = await self._row(s, space_id, seq_id)
            if row is None:
                raise NotFound(f"Sequence {seq_id} not found in the store")
            await s.delete(row)
            path = Path(row.path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    async def clear(self, space_id: str) -> int:
        async with self.sessions() as s, s.begin():
            q = select(StoredSequence).where(StoredSequence.space_id == space_id)
            rows = list((await s.scalars(q)).all())
            await s.execute(delete(StoredSequence).where(StoredSequence.space_id == space_id))
        for row in rows:
            with contextlib.suppress(FileNotFoundError):
                Path(row.path).unlink()
        return len(rows)
