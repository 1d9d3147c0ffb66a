"""``baac``: the project's commands that are run by hand (the Makefile calls them).

Each command parses its options and calls one library function; the DVC stages are not here
(``python -m baac_severity.<layer>.stages.<stage>``, run by ``dvc repro``). Libraries are imported
inside the commands, so that ``baac --help`` answers at once.

Exit status (each command's ``--help``, docs/cli.md): 0 success; 1 a check said no (the
promotion gate, drift above the threshold, no ingestion yet); 2 a usage error or a refusal that
wrote nothing (bad option, a model the code cannot serve, a download that failed verification);
130 on Ctrl-C; ``retrain``: the exit status of a failed ``dvc exp run``.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from baac_severity.config import RAW_DIR, ROOT

app = typer.Typer(
    name="baac",
    help="BAAC road-accident severity: data, features, promotion, review, monitoring, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a failure prints a plain traceback, as python -m did
    rich_markup_mode=None,  # plain help text, re-wrapped to the terminal
)


def _exit(status: int) -> None:
    if status:
        raise typer.Exit(status)


# --- data ------------------------------------------------------------------------------------


@app.command()
def fetch(
    years: Annotated[
        str,
        typer.Option(metavar="YEARS", help="years to fetch: 2021, 2019-2023 or 2019,2021,2023"),
    ],
    raw_dir: Annotated[
        Path, typer.Option(help="raw dump directory; files go to <raw-dir>/<year>/")
    ] = RAW_DIR,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="dataset API URL (default: $BAAC_DATASET_API_URL if set, else data.gouv.fr's)"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="download again even if a file is up to date")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be fetched; write nothing")
    ] = False,
) -> None:
    """Download the official yearly BAAC files (caracteristiques, lieux, vehicules, usagers)
    from data.gouv.fr into <raw-dir>/<year>/, verifying each file's checksum (or size) before
    it replaces anything; files already present and matching are skipped. Needs internet
    access. Afterwards: `dvc add data/raw`, commit data.dvc, `dvc push`.

    Exit status: 0 success; 2 a usage, network, HTTP or verification error; 130 interrupted.
    """
    from baac_severity.data import fetch as fetching

    try:
        wanted = fetching.parse_years(years)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--years") from None
    _exit(fetching.run(wanted, raw_dir, api_url, force=force, dry_run=dry_run))


@app.command()
def progress(
    next_count: Annotated[
        bool,
        typer.Option("--next", help="print the chunk count that ingests one more chunk"),
    ] = False,
) -> None:
    """The ingestion progress (metrics/progress.json), quarantined rows included.

    Exit status: 0; 1 when nothing is ingested yet.
    """
    from baac_severity.data.progress import show

    _exit(show(next_count))


@app.command()
def features() -> None:
    """Print the documented feature table as Markdown (the source of docs/FEATURES.md)."""
    import sys

    from baac_severity.features import markdown_table

    sys.stdout.write(markdown_table())


# --- modeling and decisions ------------------------------------------------------------------


@app.command()
def metrics() -> None:
    """Print the test metrics of the workspace model (model/evaluation.json)."""
    from baac_severity.config import EVALUATION
    from baac_severity.data.io import read_json
    from baac_severity.modeling.train import print_test_metrics

    print_test_metrics(read_json(EVALUATION))


@app.command()
def promote(
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment", "-e", help="DVC experiment name (`dvc exp show`); default: workspace"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="promote even if the gate refuses")
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="why the gate is overridden (required with --force)")
    ] = None,
    if_better: Annotated[
        bool,
        typer.Option(
            "--if-better", help="a refused gate keeps the champion and exits 0 (used by `make run`)"
        ),
    ] = False,
    dvc: Annotated[bool, typer.Option(help="`dvc add models`")] = True,
) -> None:
    """Promote the workspace model, or a DVC experiment's, into models/ (models.dvc) and the
    registry (registry.json, in git) if it passes the gate (docs/experiments.md). On a fresh
    clone the committed champion is restored, not promoted again.

    Exit status: 0 promoted (or already the champion, or kept with --if-better); 1 the gate
    refused; 2 refused, nothing written: a model the code cannot serve, or a champion this
    clone cannot restore.
    """
    from baac_severity.decisions import promote as promotion

    if force and not (reason or "").strip():
        raise typer.BadParameter("--force needs --reason TEXT: the reason is recorded")
    options = promotion.Options(force=force, reason=reason, with_dvc=dvc, soft_gate=if_better)
    _exit(promotion.run(experiment, options))


@app.command()
def rollback() -> None:
    """Make the registry's previous champion the champion again (from the DVC cache, or the
    DVC remote in another clone).

    Exit status: 0 rolled back; 2 the registry has nothing to roll back to.
    """
    from baac_severity.decisions import promote as promotion

    _exit(promotion.run(None, promotion.Options(), rollback_instead=True))


@app.command()
def review(
    experiments: Annotated[
        list[str] | None, typer.Argument(help="experiment names (default: all of the baseline)")
    ] = None,
    baseline: Annotated[str, typer.Option("--baseline", "-b", help="git revision")] = "main",
    repo: Annotated[Path, typer.Option(help="repository")] = ROOT,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="report path (default: reports/...)")
    ] = None,
    plots: Annotated[bool, typer.Option(help="render the PNG plots")] = True,
) -> None:
    """Markdown review of DVC experiments against a baseline, for a pull request: written to
    reports/ and printed.

    Exit status: 0; 1 an unknown baseline or experiment.
    """
    import sys

    from baac_severity.decisions.review import review as make_review

    target, report = make_review(repo.resolve(), experiments or [], baseline, output, plots)
    print(report)
    print(f"written to {target}", file=sys.stderr)


@app.command()
def retrain(
    name: Annotated[
        str | None, typer.Option(help="experiment name (default: retrain-chunk-NNNN)")
    ] = None,
) -> None:
    """Ingest the next chunk, run the pipeline as a DVC experiment, and put the challenger
    through the promotion gate (`baac promote --experiment`).

    Exit status: the gate's (0 promoted, 1 refused, 2 refused as unservable); the exit status
    of `dvc exp run` when the experiment fails; 0 when every chunk is already in.
    """
    from baac_severity.decisions.retrain import retrain as run_retrain

    _exit(run_retrain(name))


# --- monitoring and serving ------------------------------------------------------------------


@app.command()
def monitor(
    log_dir: Annotated[
        Path | None,
        typer.Option(
            help="the service's PREDICTION_LOG_DIR (default: $PREDICTION_LOG_DIR or logs/)"
        ),
    ] = None,
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions", help="every logged row, not only those of the promoted model"
        ),
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="only rows logged at this ISO time or later")
    ] = None,
    report_dir: Annotated[Path | None, typer.Option(help="default: reports/live")] = None,
    max_share: Annotated[
        float | None, typer.Option(help="default: params monitor.max_share_drifted")
    ] = None,
    max_drop: Annotated[
        float | None,
        typer.Option(
            help="alert when the estimated ROC-AUC falls this far below the test ROC-AUC; "
            "default: params monitor.max_estimated_drop"
        ),
    ] = None,
) -> None:
    """Drift report of the service's prediction log against the promoted model's training
    rows, and its ROC-AUC estimated without labels (CBPE) against the model's test ROC-AUC.

    Exit status: 0 no drift and no estimated drop; 1 drift above the threshold or an estimated
    drop beyond monitor.max_estimated_drop; 2 no promoted model or no logged row.
    """
    from baac_severity.monitoring import live

    _exit(live.monitor(log_dir, max_share, all_versions, since, report_dir, max_drop))


@app.command()
def replay(
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    n: Annotated[int, typer.Option("--n", help="accidents to send")] = 500,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    batch: Annotated[int, typer.Option(help="accidents per request")] = 25,
    shift: Annotated[str, typer.Option(help="comma-separated shifts: night, rain, rural")] = "",
    url: Annotated[
        str | None, typer.Option(help="service URL (default: $BAAC_API_URL or 127.0.0.1:3000)")
    ] = None,
) -> None:
    """Send real held-out accidents to the prediction service (with X-API-Key: $API_KEY),
    optionally shifted, so that `baac monitor` has real traffic to check.

    Exit status: 0; 1 no API_KEY, or the service answered an error.
    """
    from baac_severity.serving import replay as replaying

    try:
        shifts = replaying.shift_names(shift)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--shift") from None
    if split not in ("train", "validation", "test"):
        raise typer.BadParameter(
            f"{split!r} is not one of train, validation, test", param_hint="--split"
        )
    _exit(replaying.send(split, n, seed, batch, shifts, url))


@app.command()
def examples(
    count: Annotated[int, typer.Option(help="accidents in the example")] = 4,
    output: Annotated[
        Path | None,
        typer.Option(
            help="where to write it (default: baac_severity/serving/predict_request.json)"
        ),
    ] = None,
) -> None:
    """Write the API's example request (real test-split accidents)."""
    from baac_severity.serving.examples import write_example

    write_example(count, output)


@app.command("sync-bentoml")
def sync_bentoml() -> None:
    """Put the champion (models/ of the current directory) into the BentoML store as
    baac-severity:<model version>, reusing it if it is there, and keep the newest
    $BAAC_KEEP_MODELS (default 5) plus the champion and the registry's previous. Prints the
    champion's tag (what to serve) on stdout: `make serve` runs it first.

    Exit status: 0; 2 no champion in models/ (run make run, or dvc pull models.dvc), or a bad
    setting.
    """
    from baac_severity.serving import bento_store, settings

    try:
        tag, done = bento_store.sync(settings.load().baac_keep_models)
    except (FileNotFoundError, settings.SettingsError) as error:
        print(f"sync-bentoml: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(done, file=sys.stderr)
    print(tag)


if __name__ == "__main__":  # python -m baac_severity.cli: what the tests and retrain run
    app(prog_name="baac")
