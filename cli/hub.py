"""``idinvert models`` and ``idinvert hub publish|download``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from idinvert.hub import registry


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_command(as_json: bool) -> None:
    """List the known models: the bundled default, the paper's three domains, your own names.

    Any --model option also takes a local model directory or a Hub repo id
    owner/name[@revision]. Official models need a setting (IDINVERT_MODEL_<NAME> or the config
    file) once you have converted and published them; --json lists the exact steps.
    """
    entries = registry.list_entries()
    if as_json:
        click.echo(json.dumps([registry.entry_to_json(e) for e in entries], indent=2))
        return
    rows = []
    for e in entries:
        status = registry.entry_status(e)
        res = f"{e.resolution}px" if e.resolution else "?"
        if status["available"]:
            where = (
                status["reference"]
                if e.kind != "bundled" or status["origin"] != "bundled with idinvert"
                else "bundled"
            )
            state = f"ready -> {where}"
        elif e.kind == "official":
            state = f"not configured (set {registry.settings.model_env_var(e.name)})"
        else:
            state = status["origin"]
        rows.append((e.name, e.kind, res, state))
    widths = [max(len(r[i]) for r in rows + [("NAME", "KIND", "RES", "STATUS")]) for i in range(3)]
    click.echo(
        "  ".join(h.ljust(w) for h, w in zip(("NAME", "KIND", "RES"), widths, strict=True))
        + "  STATUS"
    )
    for row in rows:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    official = [
        e for e in entries if e.kind == "official" and not registry.entry_status(e)["available"]
    ]
    if official:
        e = official[0]
        click.echo(
            f"\nNo copy of the official weights is on the Hugging Face Hub. To use {e.name} "
            "(same for the others):"
        )
        for i, step in enumerate(e.steps(), 1):
            click.echo(f"  {i}. {step}")
    click.echo("\n--model also takes a model directory or a Hub repo id owner/name[@revision].")


@click.group("hub")
def hub_group() -> None:
    """Publish model directories to, and fetch them from, the Hugging Face Hub."""


@hub_group.command("publish")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, help="Target repo owner/name (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate, write README.md and list what would be uploaded; upload nothing.",
)
@click.option(
    "--revision",
    "--branch",
    "revision",
    default=None,
    help="Branch to commit to (created if missing; default main).",
)
@click.option("--commit-message", default=None, help="Commit message.")
@click.option(
    "--license",
    "license_",
    default=None,
    help="Licence id for the card (default: config.json provenance 'license' or 'other').",
)
@click.option("--keep-card", is_flag=True, help="Upload the existing README.md unchanged.")
def publish_command(
    model_dir: Path,
    repo_id: str,
    private: bool,
    dry_run: bool,
    revision: str | None,
    commit_message: str | None,
    license_: str | None,
    keep_card: bool,
) -> None:
    """Validate MODEL_DIR, write its model card and upload it to the Hub as REPO_ID.

    Only top-level *.safetensors, *.json and *.md files and boundaries/*.safetensors|json are
    uploaded (never pickles). Authenticate with HF_TOKEN or `hf auth login` (write access).
    """
    from idinvert.hub.card import human_size
    from idinvert.hub.publish import prepare, publish

    plan = prepare(model_dir, repo_id, license=license_, keep_card=keep_card)
    verb = "would upload" if dry_run else "uploading"
    card = "wrote" if plan.card_written else "kept"
    click.echo(f"validated {model_dir}; {card} model card {model_dir / 'README.md'}")
    click.echo(
        f"{verb} {len(plan.files)} file(s), {human_size(plan.total_bytes)}, to {repo_id}"
        f"@{revision or 'main'}{' (private)' if private else ''}:"
    )
    for f in plan.files:
        click.echo(f"  {f.path:<40} {f.size:>12,d} B  sha256 {f.sha256}")
    for rel in plan.skipped:
        click.echo(f"  (not uploaded: {rel})")
    if dry_run:
        click.echo("dry run: nothing uploaded")
        return
    info = publish(plan, private=private, revision=revision, commit_message=commit_message)
    click.echo(f"published {repo_id}@{info.oid}: {info.commit_url}")
    click.echo(f"use it with: --model {repo_id}@{info.oid}")


@hub_group.command("download")
@click.argument("reference")
def download_command(reference: str) -> None:
    """Fetch owner/name[@revision] into the Hugging Face cache (for later offline use) and
    print the local model directory."""
    from idinvert.hub.download import download_model
    from idinvert.hub.resolve import parse_repo_reference

    parsed = parse_repo_reference(reference)
    if parsed is None:
        raise click.BadParameter(
            f"{reference!r} is not owner/name[@revision]", param_hint="REFERENCE"
        )
    click.echo(str(download_model(*parsed)))
