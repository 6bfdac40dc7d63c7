"""Builds the training corpus of the reference models from Debian's English documentation packages.

    python3 training/corpus/build.py --out .corpus --val-copy models/corpus-val.txt

Steps: `apt-get download` each package of sources.SOURCES (the versions of this machine's apt lists),
`dpkg-deb -x` it into a temporary folder, turn its files into plain text (clean.py), normalize
whitespace, cut long files into chunks, drop repeated paragraphs, and split by document into train and
validation. Writes to --out:
  train.jsonl.xz   one {"id", "source", "text"} object per training document
  val.txt          the validation documents joined by blank lines (at most --max-val-bytes)
  val.jsonl        the validation documents with their ids
  manifest.json    packages, versions, licences (from each .deb's copyright file), sizes, settings
Needs only Debian's python3 (3.11 standard library), apt-get and dpkg-deb.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import clean
from dedup import Doc, chunk, dedup_paragraphs, split
from sources import SOURCES, Source


def download(package: str, into: Path) -> Path:
    """The package's .deb, fetched with `apt-get download` into `into` (reused when already there)."""
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=into, check=True, stdout=subprocess.DEVNULL)
        found = sorted(into.glob(f"{package}_*.deb"))
    if len(found) != 1:
        raise RuntimeError(f"expected one .deb for {package} in {into}, found {[p.name for p in found]}")
    return found[0]


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def licences(copyright_text: str) -> list[str]:
    """The licence names a copyright file declares: the `License:` fields of a machine-readable (DEP-5)
    file, else the licence names its prose mentions."""
    named = re.findall(r"^License:[ \t]*(\S[^\n]*)", copyright_text, flags=re.M)
    if named and re.match(r"Format:", copyright_text):
        return sorted({n.strip() for n in named})
    known = [("public domain", "public-domain"), ("GNU General Public License", "GPL"),
             ("GNU Free Documentation License", "GFDL"), ("Artistic License", "Artistic"),
             ("Creative Commons", "CC"), ("BSD", "BSD"), ("MIT", "MIT"), ("Python Software Foundation", "PSF")]
    return sorted({short for phrase, short in known if phrase.lower() in copyright_text.lower()}) or ["see copyright"]


def copyright_of(package: str, debs: Path, work: Path) -> tuple[str, str]:
    """(copyright file text, where it was read: "package:path"). Some packages make their doc folder a
    link to another package's (manpages-dev -> manpages); then that package is fetched and its file read."""
    doc = work / package / "usr/share/doc" / package
    if doc.is_symlink():
        owner = doc.readlink().name
        if owner == package:
            raise RuntimeError(f"{package}: its doc folder links to itself")
        extract(owner, debs, work)
        return copyright_of(owner, debs, work)
    path = doc / "copyright"
    return path.read_text(errors="replace"), f"{package}:{path.relative_to(work / package).as_posix()}"


def source_documents(source: Source, debs: Path, work: Path) -> tuple[list[Doc], dict]:
    """The package's documents (normalized and chunked) and its manifest entry."""
    deb = download(source.package, debs)
    tree = extract(source.package, debs, work)
    text, copyright_path = copyright_of(source.package, debs, work)
    docs: list[Doc] = []
    raw_chars = 0
    for name, body in source.documents(tree):
        body = clean.normalize(body)
        raw_chars += len(body)
        if body:
            docs.extend(chunk(Doc(f"{source.package}:{name}", source.package, body)))
    entry = {
        "package": source.package,
        "version": deb_field(deb, "Version"),
        "what": source.what,
        "deb": deb.name,
        "deb_sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
        "licences": licences(text),
        "copyright_file": copyright_path,
        "copyright_head": text[:600],
        "files": len({d.id.split("#")[0] for d in docs}),
        "chars_after_cleaning": raw_chars,
    }
    return docs, entry


def extract(package: str, debs: Path, work: Path) -> Path:
    """The package's files, unpacked with `dpkg-deb -x` into work/package (once)."""
    tree = work / package
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(download(package, debs)), str(tree)], check=True)
    return tree


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".corpus"))
    ap.add_argument("--debs", type=Path, help="keep the downloaded .deb files here (default: a temporary folder)")
    ap.add_argument("--val-copy", type=Path, help="also write the validation text here")
    ap.add_argument("--val-fraction", type=float, default=0.025)
    ap.add_argument("--max-val-bytes", type=int, default=2_000_000)
    ap.add_argument("--min-paragraph-chars", type=int, default=40)
    ap.add_argument("--only", nargs="*", help="build from these packages only (for quick checks)")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    sources = [s for s in SOURCES if not args.only or s.package in args.only]

    all_docs: list[Doc] = []
    packages = []
    with tempfile.TemporaryDirectory(prefix="frugal-corpus-") as tmp:
        debs = args.debs or Path(tmp) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for source in sources:
            docs, entry = source_documents(source, debs, Path(tmp) / "trees")
            print(f"{source.package:22} {entry['version']:24} {len(docs):6} docs {entry['chars_after_cleaning']/1e6:8.2f} M chars",
                  file=sys.stderr)
            all_docs.extend(docs)
            packages.append(entry)

    kept = list(dedup_paragraphs(all_docs, min_chars=args.min_paragraph_chars))
    train, val = split(kept, args.val_fraction, args.max_val_bytes)

    with lzma.open(args.out / "train.jsonl.xz", "wt", encoding="utf-8", preset=6) as f:
        for d in train:
            f.write(json.dumps({"id": d.id, "source": d.source, "text": d.text}, ensure_ascii=False) + "\n")
    with open(args.out / "val.jsonl", "w", encoding="utf-8") as f:
        for d in val:
            f.write(json.dumps({"id": d.id, "source": d.source, "text": d.text}, ensure_ascii=False) + "\n")
    val_text = "\n\n".join(d.text for d in val) + "\n"
    (args.out / "val.txt").write_text(val_text, encoding="utf-8")
    if args.val_copy:
        args.val_copy.parent.mkdir(parents=True, exist_ok=True)
        args.val_copy.write_text(val_text, encoding="utf-8")

    def stats(docs: list[Doc]) -> dict:
        per: dict[str, int] = {}
        for d in docs:
            per[d.source] = per.get(d.source, 0) + len(d.text.encode("utf-8"))
        return {"documents": len(docs), "bytes": sum(per.values()), "bytes_by_package": per}

    manifest = {
        "description": "Frugal reference corpus: English documentation text from Debian packages",
        "debian_release": Path("/etc/debian_version").read_text().strip(),
        "settings": {"val_fraction": args.val_fraction, "max_val_bytes": args.max_val_bytes,
                     "min_paragraph_chars": args.min_paragraph_chars, "chunk_chars": 32768},
        "packages": packages,
        "documents_before_dedup": len(all_docs),
        "train": stats(train),
        "validation": stats(val) | {"sha256": hashlib.sha256(val_text.encode("utf-8")).hexdigest()},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"train {manifest['train']['bytes']/1e6:.1f} MB in {len(train)} docs, "
          f"validation {manifest['validation']['bytes']/1e6:.2f} MB in {len(val)} docs", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
