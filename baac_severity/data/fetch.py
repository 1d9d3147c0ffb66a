"""Command ``fetch``: download official yearly BAAC files from data.gouv.fr into the raw dump.

The files are found through the data.gouv.fr dataset API (``GET /api/1/datasets/<id>/`` lists
every resource with its ``title``, ``url``, ``filesize`` and sometimes a ``checksum``), never
through hard-coded file URLs: ONISR re-uploads corrected files under new URLs. For each year the
four tables are picked by file name with ``baac_severity.data.loaders.table_of``, so the naming
rules live in one place.

Transient failures (a refused or reset connection, a timeout before the answer, a 5xx answer)
are retried with exponential backoff (urllib3 ``Retry``) before the command gives up with an
error naming the URL. A connection dropped in the middle of a file is not resumed: the file
fails its verification, nothing is kept, and running the command again fetches it.

Each file is streamed to a temporary file next to its target, verified (checksum when the API
gives one, else size), and only then renamed into ``<raw-dir>/<year>/<published name>``. A
failure deletes the temporary file, so an existing file is never damaged and nothing partial is
left behind. Files already present and matching are skipped, so the command is idempotent.

    baac fetch --years 2019-2023
    baac fetch --years 2019,2021 --dry-run
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from baac_severity.config import RAW_DIR
from baac_severity.data import schema

# The dataset's slug carries the last published year and changes with every yearly release
# ("bases-de-donnees-annuelles-des-accidents-corporels-de-la-circulation-routiere-annees-de-
# 2005-a-2022", then "...-a-2023", "...-a-2024"); its id does not, so the id is what we pin.
DATASET_ID = "53698f4ca3a729239d2036df"
DATASET_API_URL = f"https://www.data.gouv.fr/api/1/datasets/{DATASET_ID}/"
API_URL_ENV = "BAAC_DATASET_API_URL"

FIRST_YEAR = 2005  # the first year of the annual BAAC files
EXIT_FAILURE = 2  # the code of a usage error, and baac_severity.data.ingest's for bad input
TIMEOUT = (10, 60)  # seconds to connect, and to wait for each chunk of a download
RETRIES = 4  # further attempts after a connection error, a timeout or a 5xx answer
# urllib3's backoff factor: no wait before the first retry, then 1, 2 and 4 s (``Retry``).
BACKOFF_SECONDS = 0.5
RETRY_STATUSES = frozenset(range(500, 600))
CHUNK_BYTES = 1 << 20
USER_AGENT = "baac-severity-fetch (+https://www.data.gouv.fr)"

# udata checksum types; "sha2" is read as SHA-256. Others ("crc") fall back to the size check.
HASH_ALGORITHMS = {"sha1": "sha1", "sha2": "sha256", "sha256": "sha256", "md5": "md5"}

# A yearly file is "<table word><- or _><year>.<extensions>". table_of matches only the prefix,
# which would also accept look-alikes such as "vehicules-immatricules-baac-2023.csv".
YEAR_FILE = re.compile(r"^[a-z]+[-_](?P<year>\d{4})\.", re.IGNORECASE)
YEAR_ITEM = re.compile(r"^(?P<start>\d{4})(?:-(?P<end>\d{4}))?$")


class FetchError(Exception):
    """A failure the user can act on; the message names the year, file or URL concerned."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # a hashlib name
    value: str  # lower-case hex digest

    def of_file(self, path: Path) -> str:
        digest = hashlib.new(self.algorithm)
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class Resource:
    """One published yearly BAAC file."""

    year: int
    table: str
    name: str  # the published file name, kept as the local name
    url: str
    size: int | None
    checksum: Checksum | None

    @property
    def label(self) -> str:
        return f"{self.year}/{self.name}"


# ------------------------------------------------------------------------------ arguments


def parse_years(text: str) -> list[int]:
    """``2021``, ``2019-2023`` or ``2019,2021,2023`` (items may mix) as a sorted list."""
    years: set[int] = set()
    for item in text.split(","):
        match = YEAR_ITEM.match(item.strip())
        if match is None:
            raise ValueError(
                f"invalid year {item.strip()!r} in {text!r}: expected YYYY, YYYY-YYYY or a "
                "comma-separated list of them"
            )
        start = int(match["start"])
        end = int(match["end"] or start)
        if end < start:
            raise ValueError(f"empty year range {item.strip()!r}")
        if start < FIRST_YEAR:
            raise ValueError(f"BAAC annual files start in {FIRST_YEAR}: {start}")
        years.update(range(start, end + 1))
    return sorted(years)


def make_session() -> requests.Session:
    """A session that retries GETs on connection errors, timeouts and 5xx answers."""
    retry = Retry(
        total=RETRIES,
        backoff_factor=BACKOFF_SECONDS,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,  # the last answer comes back, for an error naming its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _attempts() -> str:
    return f"{RETRIES + 1} attempts"


def _raise_for_status(response: requests.Response, url: str) -> None:
    if response.status_code >= 400:
        message = f"HTTP {response.status_code} {response.reason or ''}".strip() + f" for {url}"
        if response.status_code in RETRY_STATUSES:
            message += f" (still failing after {_attempts()})"
        raise FetchError(message)


def fetch_dataset(session: requests.Session, api_url: str) -> dict[str, Any]:
    """The dataset document of the data.gouv.fr API."""
    try:
        response = session.get(api_url, timeout=TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as error:
        raise FetchError(
            f"cannot reach the dataset API {api_url} (gave up after {_attempts()}): {error}"
        ) from error
    _raise_for_status(response, api_url)
    try:
        document = response.json()
    except ValueError as error:
        raise FetchError(f"the dataset API {api_url} did not return JSON") from error
    if not isinstance(document, dict) or not isinstance(document.get("resources"), list):
        raise FetchError(f"{api_url} is not a data.gouv.fr dataset document (no resources list)")
    return document


def table_of(path: Path) -> str | None:
    """``baac_severity.data.loaders.table_of``: the one place that knows BAAC file names."""
    # Imported on use, like baac_severity.data.io below: both pull in pandas and pyarrow (about 2
    # s), which would make --help and argument errors slow.
    from baac_severity.data.loaders import table_of as loaders_table_of

    return loaders_table_of(path)


def year_file(name: str) -> tuple[str, int] | None:
    """(table, year) of a yearly BAAC file name, or None for any other file."""
    match = YEAR_FILE.match(name)
    table = table_of(Path(name))
    if match is None or table is None:
        return None
    return table, int(match["year"])


def _identify(entry: dict[str, Any]) -> tuple[str, str, int] | None:
    """(published file name, table, year) of a resource, or None if it is no yearly BAAC file.

    The name is the URL's last segment, else the title (titles are not always file names).
    """
    url_name = unquote(PurePosixPath(urlsplit(str(entry.get("url") or "")).path).name)
    for candidate in (url_name, str(entry.get("title") or "").strip()):
        # The name becomes a local path: refuse anything that could leave the year directory.
        if not candidate or PurePosixPath(candidate).name != candidate or "\\" in candidate:
            continue
        identified = year_file(candidate)
        if identified is not None:
            return candidate, *identified
    return None


def _checksum(entry: dict[str, Any]) -> Checksum | None:
    checksum = entry.get("checksum")
    if not isinstance(checksum, dict) or not checksum.get("value"):
        return None
    algorithm = HASH_ALGORITHMS.get(str(checksum.get("type") or "sha1").lower())
    if algorithm is None:
        return None
    return Checksum(algorithm, str(checksum["value"]).strip().lower())


def _filesize(entry: dict[str, Any]) -> int | None:
    value = entry.get("filesize")
    if value is None or isinstance(value, bool):
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        return None
    return size if size > 0 else None  # 0 or negative means "unknown" here


def baac_resources(document: dict[str, Any]) -> list[Resource]:
    """Every yearly BAAC table file of the dataset; descriptions, PDFs etc. are ignored."""
    found = []
    for entry in document["resources"]:
        if not isinstance(entry, dict) or not entry.get("url"):
            continue
        identified = _identify(entry)
        if identified is None:
            continue
        name, table, year = identified
        found.append(
            Resource(year, table, name, str(entry["url"]), _filesize(entry), _checksum(entry))
        )
    return found


def _year_span(years: Iterable[int]) -> str:
    """2005-2016, 2018 rather than a list of every year."""
    spans: list[list[int]] = []
    for year in sorted(set(years)):
        if spans and year == spans[-1][1] + 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def select(resources: Sequence[Resource], years: Sequence[int]) -> list[Resource]:
    """The four tables of each requested year; every year is checked before any download."""
    by_year: dict[int, list[Resource]] = {}
    for resource in resources:
        by_year.setdefault(resource.year, []).append(resource)
    absent = [year for year in years if year not in by_year]
    if absent:
        raise FetchError(
            f"year(s) {_year_span(absent)} not in the dataset; "
            f"years published: {_year_span(by_year)}"
        )
    chosen = []
    for year in years:
        # The same file listed twice counts once; two different files for a table are an error.
        unique = {(r.name, r.url): r for r in by_year[year]}.values()
        per_table: dict[str, list[Resource]] = {}
        for resource in unique:
            per_table.setdefault(resource.table, []).append(resource)
        listing = ", ".join(sorted(r.name for r in unique))
        missing = [table for table in schema.TABLE_NAMES if table not in per_table]
        if missing:
            raise FetchError(
                f"year {year} lacks table(s) {missing} in the dataset (found: {listing})"
            )
        ambiguous = [table for table, files in per_table.items() if len(files) > 1]
        if ambiguous:
            raise FetchError(
                f"year {year} has several files for table(s) {ambiguous} (found: {listing})"
            )
        chosen += [per_table[table][0] for table in schema.TABLE_NAMES]
    return chosen


# ------------------------------------------------------------------------------ local files


def check_conflicts(raw_dir: Path, plan: Sequence[Resource]) -> None:
    """Refuse to add a second file for a table: the loaders take exactly one per year."""
    for resource in plan:
        year_dir = raw_dir / str(resource.year)
        if not year_dir.is_dir():
            continue
        for path in sorted(year_dir.iterdir()):
            if path.name != resource.name and table_of(path) == resource.table:
                raise FetchError(
                    f"{year_dir} already holds {path.name} for table {resource.table}; the "
                    f"loaders read one file per table, so move it away before fetching "
                    f"{resource.name}"
                )


def is_up_to_date(path: Path, resource: Resource) -> bool:
    if not path.is_file():
        return False
    if resource.checksum is not None:
        return resource.checksum.of_file(path) == resource.checksum.value
    if resource.size is not None:
        return path.stat().st_size == resource.size
    # Nothing to compare with; downloads are atomic, so a present file was complete when written.
    return True


# ------------------------------------------------------------------------------- download


def _stream(session: requests.Session, resource: Resource, out: BinaryIO) -> tuple[int, str]:
    """Write the resource to ``out``; return its byte count and digest (empty if no checksum)."""
    digest = hashlib.new(resource.checksum.algorithm) if resource.checksum else None
    written = 0
    try:
        response = session.get(resource.url, stream=True, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise FetchError(
            f"cannot download {resource.url} (gave up after {_attempts()}): {error}"
        ) from error
    try:
        with response:
            _raise_for_status(response, resource.url)
            announced = response.headers.get("Content-Length")
            total = resource.size or (int(announced) if announced and announced.isdigit() else None)
            # disable=None hides the bar when stderr is not a terminal (CI logs, pipes).
            with tqdm(
                total=total,
                desc=resource.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                disable=None,
                leave=False,
            ) as bar:
                for block in response.iter_content(CHUNK_BYTES):
                    out.write(block)
                    written += len(block)
                    if digest is not None:
                        digest.update(block)
                    bar.update(len(block))
    except requests.RequestException as error:  # mid-file: not retried (see the docstring)
        raise FetchError(f"network error while downloading {resource.url}: {error}") from error
    return written, digest.hexdigest() if digest is not None else ""


def _verify(resource: Resource, size: int, digest: str) -> str:
    """Raise unless the downloaded bytes are the published ones; say what was checked."""
    if resource.checksum is not None:
        if digest != resource.checksum.value:
            raise FetchError(
                f"checksum mismatch for {resource.label} ({resource.url}): expected "
                f"{resource.checksum.algorithm} {resource.checksum.value}, got {digest}; "
                "nothing was written"
            )
        return f"{resource.checksum.algorithm} verified"
    if resource.size is not None:
        if size != resource.size:
            raise FetchError(
                f"size mismatch for {resource.label} ({resource.url}): expected "
                f"{resource.size} bytes, got {size}; nothing was written"
            )
        return "size verified"
    return "not verified: the API gives no checksum or size"


def download(session: requests.Session, resource: Resource, target: Path) -> str:
    """Download atomically: ``target`` is replaced only by a complete, verified file."""
    from baac_severity.data.io import (
        atomic_path,  # temp file in the target's directory, then os.replace
    )

    new_dir = not target.parent.exists()
    try:
        with atomic_path(target, suffix=".part") as tmp, tmp.open("wb") as out:
            size, digest = _stream(session, resource, out)
            verified = _verify(resource, size, digest)
    except BaseException:
        # An empty year directory would read as a year with no tables: remove the one we made.
        if new_dir and target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise
    return f"downloaded {_human_size(size)} ({verified})"


def _human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size} bytes" if size < 100_000 else f"{size / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------- main


def fetch(
    years: Sequence[int], raw_dir: Path, api_url: str, *, force: bool = False, dry_run: bool = False
) -> tuple[int, int]:
    """Fetch the years; return (files downloaded or to download, files up to date)."""
    with make_session() as session:
        plan = select(baac_resources(fetch_dataset(session, api_url)), years)
        check_conflicts(raw_dir, plan)
        fetched = current = 0
        for resource in plan:
            target = raw_dir / str(resource.year) / resource.name
            if not force and is_up_to_date(target, resource):
                current += 1
                print(f"  {resource.label}: up to date")
                continue
            fetched += 1
            if dry_run:
                print(
                    f"  {resource.label}: would download {_human_size(resource.size)} "
                    f"from {resource.url}"
                )
            else:
                print(f"  {resource.label}: {download(session, resource, target)}", flush=True)
    return fetched, current


def _summary(raw_dir: Path, years: Sequence[int], fetched: int, current: int, dry: bool) -> str:
    verb = "to download" if dry else "downloaded"
    lines = [
        f"fetch: {fetched} file(s) {verb}, {current} up to date in {raw_dir} "
        f"(years {_year_span(years)})."
    ]
    if fetched and not dry and raw_dir == RAW_DIR:
        lines += [
            "Next, record the new raw data with DVC (data.dvc tracks data/raw):",
            f"  dvc add {raw_dir}    # updates data.dvc",
            "  git add data.dvc && git commit -m 'Fetch BAAC years' && dvc push",
        ]
    elif fetched and not dry:
        lines += [f"Next, record the new raw data with DVC: dvc add {raw_dir}, then dvc push."]
    return "\n".join(lines)


def run(
    years: Sequence[int],
    raw_dir: Path = RAW_DIR,
    api_url: str | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> int:
    """``baac fetch``: fetch and print a summary; the exit status (``EXIT_FAILURE`` on an
    error, which leaves every file as it was)."""
    api_url = api_url or os.environ.get(API_URL_ENV) or DATASET_API_URL
    try:
        fetched, current = fetch(years, raw_dir, api_url, force=force, dry_run=dry_run)
    except FetchError as error:
        print(f"fetch: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # disk full, permission denied...: the target is left as it was
        print(f"fetch: error: cannot write under {raw_dir}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("fetch: interrupted; no partial file was left behind", file=sys.stderr)
        return 130  # the shell's code for SIGINT
    print(_summary(raw_dir, years, fetched, current, dry_run))
    return 0
