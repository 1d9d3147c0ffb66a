"""Stage ``clean-scd2``: clean each chunk and fold it into the SCD2 histories.

Outputs ``data/clean/accidents.parquet`` (key ``num_acc``) and ``data/clean/users.parquet``
(key ``user_id``). The stage is incremental: ``data/clean/state.json`` lists the chunks already
applied with their content hashes, and only chunks after them are processed. If the applied
chunks are no longer a prefix of the ingested ones (a different chunk size, fewer chunks, other
raw data), the histories are rebuilt from chunk 1, so the result never depends on how the chunks
arrived.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline import entities, scd2, schema
from pipeline.ingest import CHUNK_MANIFEST
from pipeline.io import BadInputError, read_json, write_json, write_parquet
from pipeline.paths import CHUNKS_DIR, CLEAN_ACCIDENTS, CLEAN_STATE, CLEAN_USERS

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


@dataclass
class Histories:
    accidents: pd.DataFrame | None = None
    users: pd.DataFrame | None = None

    def apply(self, chunk: Chunk) -> None:
        tables = chunk.read()
        self.accidents = scd2.apply_chunk(
            self.accidents,
            entities.accidents(tables),
            schema.KEY,
            chunk.chunk_id,
            chunk.as_of,
            source=str(chunk.path),
        )
        self.users = scd2.apply_chunk(
            self.users,
            entities.users(tables),
            schema.USER_KEY,
            chunk.chunk_id,
            chunk.as_of,
            source=str(chunk.path),
        )


def resume_point(chunks: list[Chunk], state: dict) -> int:
    """How many leading chunks the stored histories already contain (0 = rebuild)."""
    applied = state.get("applied", []) if state.get("version") == STATE_VERSION else []
    if not (CLEAN_ACCIDENTS.exists() and CLEAN_USERS.exists()) or len(applied) > len(chunks):
        return 0
    for entry, chunk in zip(applied, chunks, strict=False):
        if entry != {"chunk_id": chunk.chunk_id, "content_hash": chunk.content_hash}:
            return 0
    return len(applied)


def clean(chunks_dir: Path = CHUNKS_DIR) -> Histories:
    chunks = ingested_chunks(chunks_dir)
    state = read_json(CLEAN_STATE, default={})
    start = resume_point(chunks, state)
    histories = Histories()
    if start:
        histories.accidents = pd.read_parquet(CLEAN_ACCIDENTS)
        histories.users = pd.read_parquet(CLEAN_USERS)
    elif state:
        print("clean-scd2: ingested chunks changed, rebuilding the histories", file=sys.stderr)
    for chunk in tqdm(chunks[start:], desc="clean-scd2", unit="chunk"):
        started = time.perf_counter()
        histories.apply(chunk)
        elapsed = time.perf_counter() - started
        tqdm.write(f"clean-scd2: chunk {chunk.chunk_id} applied in {elapsed:.2f} s", sys.stderr)
    if start < len(chunks) or not CLEAN_ACCIDENTS.exists():
        write_parquet(scd2.ordered(histories.accidents, schema.KEY), CLEAN_ACCIDENTS)
        write_parquet(scd2.ordered(histories.users, schema.USER_KEY), CLEAN_USERS)
    applied = [{"chunk_id": c.chunk_id, "content_hash": c.content_hash} for c in chunks]
    # The state is written last: after a crash the next run re-applies, which is a no-op.
    write_json({"version": STATE_VERSION, "applied": applied}, CLEAN_STATE)
    return histories


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.clean",
        description="DVC stage clean-scd2: clean the ingested chunks and keep SCD Type 2 "
        "histories of accidents and road users in data/clean/.",
    )
    parser.parse_args(argv)
    try:
        clean()
    except BadInputError as error:
        print(f"clean-scd2: bad input: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
