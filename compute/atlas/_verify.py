"""``python -m compute verify ATLAS``: check every atlas file against the checksums in its root."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from compute.atlas import _format as fmt

__all__ = ["VERIFY_MODES", "VerifyReport", "check_recorded", "repair_advice", "verify_atlas"]

# how Atlas.open checks files against atlas.json: "lazy" sizes of every file at open and each
# study's checksums on its first use; "full" every checksum at open; "sizes" sizes only; "none"
VERIFY_MODES = ("lazy", "full", "sizes", "none")


def check_recorded(path: Path, files: dict, rels, *, hashes: bool) -> list[str]:
    """Problems ("<file>: <what>") of the recorded files ``rels`` under ``path`` (``files``:
    atlas.json's {relative path: {sha256, bytes}}): missing, wrong size, and (``hashes``) a
    content that differs from its checksum."""
    from compute.files import file_sha256

    problems = []
    for rel in rels:
        rec, f = files[rel], path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif f.stat().st_size != rec.get("bytes"):
            problems.append(f"{rel}: {f.stat().st_size} bytes, {rec.get('bytes')} recorded (damaged or truncated)")
        elif hashes and file_sha256(f) != rec.get("sha256"):
            problems.append(f"{rel}: content differs from its recorded sha256 (damaged)")
    return problems


def repair_advice(root: dict, path: Path, damaged_studies: set[str]) -> str:
    """What to run to repair the atlas (the build's --rewrite, or the import)."""
    return _advice(root, path, damaged_studies)


@dataclass
class VerifyReport:
    path: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)  # "<file>: <what is wrong>"
    advice: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        if self.ok:
            return f"{self.path}: all {self.checked} files match their recorded checksums"
        lines = [f"{self.path}: {len(self.problems)} problem(s) in {self.checked} recorded files:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join([*lines, f"to repair: {self.advice}"])


def _advice(root: dict, path: Path, damaged_studies: set[str]) -> str:
    build = root.get("build") or {}
    manifest = build.get("manifest")
    where = f" (studies: {', '.join(sorted(damaged_studies))})" if damaged_studies else ""
    if manifest:
        return (f"python -m compute build {manifest} --rewrite{where}: rewrites the atlas files from the build's work "
                f"folder; if that fails too, add --force to recompute them")
    if build.get("source") == "import-signature":
        return (f"python -m compute import-signature --attributions {build.get('attributions_dir')} "
                f"--gene-order {build.get('gene_order_file')} --out {path}{where}")
    return f"rebuild the atlas at {path}{where}"


def verify_atlas(path: str | Path, *, hashes: bool = True) -> VerifyReport:
    """Check each file recorded in ``atlas.json`` (size, and sha256 unless ``hashes`` is False);
    name what is missing, damaged or unexpected, and what to re-run."""
    from compute.files import file_sha256

    path = Path(path)
    report = VerifyReport(path)
    root_file = path / fmt.ROOT_FILE
    if not root_file.is_file():
        report.problems.append(f"{fmt.ROOT_FILE}: missing: the atlas is incomplete (its build or import did not finish)")
        report.advice = "re-run the build (python -m compute build MANIFEST) or the import that writes this atlas"
        return report
    try:
        root = json.loads(root_file.read_text())
    except json.JSONDecodeError as exc:
        report.problems.append(f"{fmt.ROOT_FILE}: not valid JSON ({exc})")
        report.advice = "re-run the build or import that writes this atlas"
        return report
    files = root.get("files")
    if not isinstance(files, dict):
        report.problems.append(f"{fmt.ROOT_FILE}: records no checksums (written by an older SigAtlas)")
        report.advice = _advice(root, path, set())
        return report
    damaged: set[str] = set()
    for rel, rec in sorted(files.items()):
        f = path / rel
        report.checked += 1
        study = rel.split("/")[1] if rel.startswith(f"{fmt.STUDIES_DIR}/") else None
        if not f.is_file():
            report.problems.append(f"{rel}: missing")
        elif f.stat().st_size != rec.get("bytes"):
            report.problems.append(f"{rel}: {f.stat().st_size} bytes, {rec.get('bytes')} recorded (damaged or truncated)")
        elif hashes and file_sha256(f) != rec.get("sha256"):
            report.problems.append(f"{rel}: content differs from its recorded sha256 (damaged)")
        else:
            continue
        if study:
            damaged.add(study)
    for s in root.get("studies", []):
        if not (path / fmt.STUDIES_DIR / s["id"]).is_dir():
            report.problems.append(f"{fmt.STUDIES_DIR}/{s['id']}/: study folder missing")
            damaged.add(s["id"])
    if report.problems:
        report.advice = _advice(root, path, damaged)
    return report
