"""Stage ``clean-scd2``: clean each chunk and fold it into the SCD2 histories.

Outputs ``data/clean/accidents.parquet`` (key ``num_acc``) and ``data/clean/users.parquet``
(key ``user_id``), each a Parquet dataset directory with one part per chunk. The stage is
incremental: ``data/clean/state.json`` lists the chunks already applied with their content
hashes, and only chunks after them are processed. If the applied chunks are no longer a prefix
of the ingested ones (a different chunk size, fewer chunks, other raw data), the histories are
rebuilt from chunk 1, so the result never depends on how the chunks arrived.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from baac_severity.config import CHUNKS_DIR, CLEAN_ACCIDENTS, CLEAN_DIR, CLEAN_STATE, CLEAN_USERS
from baac_severity.data import entities, scd2, schema
from baac_severity.data.ingest import CHUNK_MANIFEST
from baac_severity.data.io import BadInputError, read_json, remove_leftovers, write_json

STATE_VERSION = 1


@dataclass(frozen=True)
class Chunk:
    chunk_id: int
    as_of: pd.Timestamp
    content_hash: str
    path: Path

    def read(self) -> dict[str, pd.DataFrame]:
        tables = {}
        for table in schema.TABLE_NAMES:
            file = self.path / f"{table}.parquet"
            if not file.exists():
                raise BadInputError(file, "chunk snapshot lacks this table")
            tables[table] = pd.read_parquet(file).astype(schema.dtypes(table))
        if tables["caracteristiques"].empty:
            raise BadInputError(self.path / "caracteristiques.parquet", "empty chunk: no accidents")
        return tables


def ingested_chunks(root: Path = CHUNKS_DIR) -> list[Chunk]:
    chunks = []
    for manifest_path in sorted(root.glob(f"chunk-*/{CHUNK_MANIFEST}")):
        manifest = read_json(manifest_path)
        chunks.append(
            Chunk(
                chunk_id=int(manifest["chunk_id"]),
                as_of=pd.Timestamp(manifest["as_of"]),
                content_hash=manifest["content_hash"],
                path=manifest_path.parent,
            )
        )
    if not chunks:
        raise BadInputError(root, "no ingested chunks: run the ingest-chunk stage first")
    ids = [chunk.chunk_id for chunk in chunks]
    if ids != list(range(1, len(ids) + 1)):
        raise BadInputError(root, f"chunk ids are not 1..n: {ids}")
    return chunks


Builder = Callable[[dict[str, pd.DataFrame]], pd.DataFrame]  # a chunk's tables -> entity records


def histories() -> dict[str, tuple[scd2.PartitionedHistory, Builder]]:
    """Each entity's history store and the function that builds its records from a chunk."""
    return {
        "accidents": (scd2.PartitionedHistory(CLEAN_ACCIDENTS, schema.KEY), entities.accidents),
        "users": (scd2.PartitionedHistory(CLEAN_USERS, schema.USER_KEY), entities.users),
    }


def resume_point(chunks: list[Chunk], state: dict) -> int:
    """How many leading chunks the stored histories already contain (0 = rebuild)."""
    applied = state.get("applied", []) if state.get("version") == STATE_VERSION else []
    if not (CLEAN_ACCIDENTS.is_dir() and CLEAN_USERS.is_dir()) or len(applied) > len(chunks):
        return 0
    for entry, chunk in zip(applied, chunks, strict=False):
        if entry != {"chunk_id": chunk.chunk_id, "content_hash": chunk.content_hash}:
            return 0
    return len(applied)


def state_of(applied: list[Chunk]) -> dict:
    return {
        "version": STATE_VERSION,
        "applied": [{"chunk_id": c.chunk_id, "content_hash": c.content_hash} for c in applied],
    }


def clean(chunks_dir: Path = CHUNKS_DIR) -> None:
    chunks = ingested_chunks(chunks_dir)
    # A run killed mid-write (SIGKILL) may have left temporaries; DVC would hash them.
    remove_leftovers(CLEAN_DIR)
    state = read_json(CLEAN_STATE, default={})
    start = resume_point(chunks, state)
    if start == 0 and state:
        print("clean-scd2: ingested chunks changed, rebuilding the histories", file=sys.stderr)
    stores = histories()
    for store, _ in stores.values():
        store.rewind(start)
    # disable=None: a bar on a terminal only; logs (make run, dvc, CI) get one line per chunk.
    bar = tqdm(chunks[start:], desc="clean-scd2", unit="chunk", disable=None)
    for done, chunk in enumerate(bar, start + 1):
        started = time.perf_counter()
        tables = chunk.read()
        for store, build in stores.values():
            store.apply(build(tables), chunk.chunk_id, chunk.as_of, str(chunk.path))
        # The state is committed after each chunk's parts: a killed run loses only the chunk
        # in progress, which the next run rewinds (store.rewind) and applies again.
        write_json(state_of(chunks[:done]), CLEAN_STATE)
        elapsed = time.perf_counter() - started
        tqdm.write(f"clean-scd2: chunk {chunk.chunk_id} applied in {elapsed:.2f} s", sys.stderr)
