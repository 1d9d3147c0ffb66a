"""ingest-chunk reads the raw dump that ``data.dvc`` records, not whatever ``data/raw`` holds.

A stage that depends on the path ``data/raw`` makes ``data.dvc`` an upstream stage, and
``dvc repro`` then records whatever ``data/raw`` holds into ``data.dvc`` (frozen or not) before
any stage can refuse it: corrupted raw data would become the recorded source. So dvc.yaml
passes the stage the hash ``data.dvc`` records (``--raw-md5 ${outs[0].md5}``: DVC reruns the
stage when it changes), new raw data enters through ``dvc add data/raw`` (data/README.md), and
the stage checks here, before reading anything, that the folder still has that hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from baac_severity.data.io import BadInputError


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_md5(folder: Path) -> str:
    """DVC's hash of a tracked folder (``hash: md5``): the md5 of the JSON list of its files'
    md5 and relative paths, sorted by path, suffixed ``.dir``. Computed here because DVC's own
    status commands wait for the repository lock, which the running ``dvc repro`` holds."""
    entries = [
        {"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()}
        for path in folder.rglob("*")
        if path.is_file()
    ]
    entries.sort(key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def check_recorded(raw_dir: Path, recorded_md5: str) -> None:
    """Raise ``BadInputError`` unless ``raw_dir`` holds exactly the data DVC recorded."""
    if not raw_dir.is_dir():
        raise BadInputError(raw_dir, "raw data directory does not exist (run `dvc pull`?)")
    if folder_md5(raw_dir) != recorded_md5:
        raise BadInputError(
            raw_dir,
            "differs from what data.dvc records: record new raw data with "
            f"`dvc add {raw_dir}` (then `dvc repro`), or restore the recorded data with "
            "`dvc checkout data.dvc`",
        )
