"""What the Export tab shows and builds, without Gradio: run summaries, zips, merge/export results, registry rows.

Every action calls the same use case as the CLI (``merge``, ``export``, ``registry``); this module
only turns their results into text and tables.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from core.application.export import export
from core.application.merge import merge
from core.application.registry import open_registry, push_version, register
from core.domain.config import Settings
from core.domain.manifest import RunManifest
from core.domain.output_dirs import MARKER_FILE

LINEAGE_FILE = "lineage.json"
REGISTRY_COLUMNS = ["version", "stage", "kind", "technique", "base model", "data fingerprint", "eval loss", "created"]


def run_dir(settings: Settings, run_name: str | None) -> Path:
    """The directory of a chosen run.

    Raises:
        ValueError: If no run is chosen or it has no manifest.
    """
    if not run_name:
        raise ValueError("choose a finished run first")
    directory = Path(settings.paths.runs_dir) / run_name
    if not (directory / "manifest.json").is_file():
        raise ValueError(f"{run_name}: not a run under {settings.paths.runs_dir}")
    return directory


def run_summary(settings: Settings, run_name: str | None) -> str:
    """One paragraph about the run: technique, base model, status, what already exists (merged, exports)."""
    if not run_name:
        return "Choose a finished run."
    directory = run_dir(settings, run_name)
    manifest = RunManifest.load(directory)
    config = manifest.config or {}
    technique = (config.get("technique") or {}).get("name", "?")
    base = (config.get("model") or {}).get("name", "?")
    exports = (
        sorted(path.name for path in (directory / "export").glob("*") if path.is_dir())
        if (directory / "export").is_dir()
        else []
    )
    merged = "yes" if (directory / "merged" / LINEAGE_FILE).is_file() else "not yet"
    return (
        f"**{run_name}**: {technique} on `{base}`, {manifest.status}. Merged: {merged}. "
        f"Exports: {', '.join(exports) if exports else 'none'}."
    )


def merge_run(settings: Settings, run_name: str) -> str:
    """Merges the run's adapter into its base (the ``merge`` use case) and describes the verification."""
    output = merge(settings, run_dir(settings, run_name))
    verification = json.loads((output / LINEAGE_FILE).read_text(encoding="utf-8")).get("verification") or {}
    return (
        f"Merged into `{_shown(settings, output)}`. Verification passed: max |logit difference| "
        f"{verification.get('max_abs_diff', float('nan')):.2e} <= tolerance {verification.get('tolerance', 0):.2e} "
        f"on {len(verification.get('prompts', []))} prompts ({verification.get('dtype', '?')}, "
        f"{verification.get('seconds', '?')} s)."
    )


def _shown(settings: Settings, path: Path) -> str:
    """``path`` relative to the runs folder (``my-run/merged``) when it lies inside it."""
    runs_dir = Path(settings.paths.runs_dir).resolve()
    resolved = Path(path).resolve()
    return resolved.relative_to(runs_dir).as_posix() if resolved.is_relative_to(runs_dir) else str(path)


def zip_artifact(settings: Settings, run_name: str, which: str) -> Path:
    """Zips the run's adapter (``final/``) or merged model (``merged/``) into a temporary file for download.

    Args:
        settings: Settings.
        run_name: The run.
        which: ``adapter`` or ``merged``.

    Returns:
        The zip file (outside the run directory; the run is not touched).

    Raises:
        ValueError: If the artifact does not exist (merge first).
    """
    directory = run_dir(settings, run_name)
    manifest = RunManifest.load(directory)
    folder = directory / (manifest.final_path or "final") if which == "adapter" else directory / "merged"
    if not folder.is_dir():
        raise ValueError(f"{run_name}: no {'merged model' if which == 'merged' else 'final adapter'} yet (merge first)")
    archive = Path(tempfile.mkdtemp(prefix="finetune-studio-download-")) / f"{run_name}-{which}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != MARKER_FILE:
                bundle.write(path, f"{run_name}-{which}/{path.relative_to(folder).as_posix()}")
    return archive


def export_run(settings: Settings, run_name: str, export_format: str, quantization: str) -> tuple[str, str]:
    """Exports the run as GGUF (or GGUF + Modelfile) through the ``export`` use case.

    Returns:
        A description of the verified result and the output folder.
    """
    output = export(settings, run_dir(settings, run_name), export_format, quantization, overwrite=False)
    report = json.loads((output / "verification.json").read_text(encoding="utf-8"))
    figures = report["verification"]
    text = (
        f"Wrote `{report['file']}` ({report['size_bytes'] / 1e6:.1f} MB). Verification passed "
        f"({figures['requirement']}): greedy answers identical: {'yes' if figures['greedy_identical'] else 'no'}, "
        f"top-1 agreement {figures['top1_agreement_all_positions']:.1%} of all positions "
        f"({figures['top1_agreement']:.1%} of answer positions), "
        f"max |logit difference| {figures['max_abs_logit_diff']:.3g}."
    )
    if export_format == "ollama":
        text += f" Ollama: `cd {output} && ollama create {run_name} -f Modelfile`"
    return text, str(output)


def register_run(settings: Settings, name: str, run_name: str) -> str:
    """Registers the run as the next version of ``name``; returns ``name:version``."""
    if not name or not name.strip():
        raise ValueError("enter a registered model name")
    return register(settings, name.strip(), run_dir(settings, run_name)).reference


def registry_rows(settings: Settings) -> tuple[list[list[Any]], list[str]]:
    """Every registered version as a table row, and the references for the version chooser."""
    rows, references = [], []
    for version in open_registry(settings).list():
        lineage = version.lineage
        metrics = lineage.get("metrics") or {}
        loss = metrics.get("final_eval_loss", metrics.get("eval_loss"))
        rows.append(
            [
                version.reference,
                version.stage,
                version.kind,
                lineage.get("technique"),
                lineage.get("base_model"),
                lineage.get("data_fingerprint"),
                round(loss, 4) if isinstance(loss, int | float) else None,
                version.created_at[:19],
            ]
        )
        references.append(version.reference)
    return rows, references


def version_details(settings: Settings, reference: str | None) -> dict[str, Any]:
    """Lineage and metrics of one registered version (its configuration left out)."""
    if not reference:
        return {}
    version = open_registry(settings).resolve(reference)
    lineage = {key: value for key, value in version.lineage.items() if key != "config"}
    return {"reference": version.reference, "stage": version.stage, "kind": version.kind, "lineage": lineage}


def push_preview(settings: Settings, reference: str | None, repo_id: str, private: bool, dry_run: bool) -> str:
    """A registered version to the Hub (``registry push``), or the dry-run listing."""
    if not reference:
        raise ValueError("register the run and choose a version first")
    if not repo_id or not repo_id.strip():
        raise ValueError("enter the Hub repository as user/name")
    result = push_version(settings, reference, repo_id.strip(), private, dry_run)
    return result if dry_run else f"Pushed {reference} to {result}"
