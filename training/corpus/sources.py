"""Which Debian packages the corpus is made of, and how each one's files become documents.

A source is a package name plus a function that walks the package's extracted tree (the folder that
`dpkg-deb -x` filled) and yields (document name, plain text) pairs. Walks are sorted so the corpus is the
same on every machine.
"""

from __future__ import annotations

import gzip
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import clean

Documents = Iterator[tuple[str, str]]


@dataclass(frozen=True)
class Source:
    package: str
    what: str
    documents: Callable[[Path], Documents]


def read_text(path: Path) -> str:
    """A file's text, gunzipped when it ends in .gz or .dz (dictzip is gzip-compatible). Read as UTF-8
    with a few stray bytes dropped; a file with many invalid bytes is older Latin-1 text."""
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    if bad > len(text) / 1000:
        return data.decode("latin-1")
    return text.replace("\ufffd", "") if bad else text


def _files(root: Path, pattern: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    found = [p for p in root.glob(pattern) if p.is_file() and not p.is_symlink()]
    return sorted(p for p in found if not any(part in p.as_posix() for part in exclude))


def _name(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def python_docs(root: Path) -> Documents:
    base = root / "usr/share/doc/python3.11/html/_sources"
    # The changelog is a list of issue numbers, not prose.
    for p in _files(base, "**/*.rst.txt", exclude=("whatsnew/changelog",)):
        yield _name(root, p), clean.rst_to_text(read_text(p))


def linux_docs(root: Path) -> Documents:
    base = root / "usr/share/doc/linux-doc-6.1/Documentation"
    # translations/ is not English; device-tree bindings and the ABI lists are terse registries.
    skip = ("/translations/", "/devicetree/bindings/", "/ABI/", ".h.rst.exceptions")
    for p in _files(base, "**/*.rst.gz", exclude=skip):
        yield _name(root, p), clean.rst_to_text(read_text(p))
    for p in _files(base, "**/*.txt.gz", exclude=skip):
        yield _name(root, p), textwrap.dedent(read_text(p))


def debian_handbook(root: Path) -> Documents:
    for p in _files(root / "usr/share/doc/debian-handbook/html/en-US", "*.html"):
        yield _name(root, p), clean.html_to_text(read_text(p))


def plain_files(*patterns: str) -> Callable[[Path], Documents]:
    def documents(root: Path) -> Documents:
        for pattern in patterns:
            for p in _files(root, pattern):
                yield _name(root, p), textwrap.dedent(read_text(p))

    return documents


def info_files(root: Path) -> Documents:
    for p in _files(root / "usr/share/info", "*.info*.gz"):
        yield _name(root, p), clean.info_to_text(read_text(p))


def man_pages(root: Path) -> Documents:
    for p in _files(root / "usr/share/man", "man*/*.gz"):
        yield _name(root, p), clean.roff_to_text(read_text(p))


def perl_pods(root: Path) -> Documents:
    for p in _files(root / "usr/share/perl", "*/pod/*.pod"):
        yield _name(root, p), clean.pod_to_text(read_text(p))


def vim_help(root: Path) -> Documents:
    for p in _files(root / "usr/share/vim", "vim*/doc/*.txt"):
        yield _name(root, p), clean.vimhelp_to_text(read_text(p))


def gcide(root: Path) -> Documents:
    p = root / "usr/share/dictd/gcide.dict.dz"
    text = read_text(p)
    # The database opens with its own metadata entries (00-database-*), which end at the first headword "A".
    start = text.find("\nA \\")
    yield _name(root, p), clean.gcide_to_text(text[start + 1 if start >= 0 else 0:])


# Fortune files that are not English prose or that joke about groups of people.
_FORTUNE_SKIP = {"ascii-art", "translate-me", "ethnic", "men-women"}


def fortunes(root: Path) -> Documents:
    base = root / "usr/share/games/fortunes"
    for p in sorted(base.iterdir()):
        if p.is_file() and not p.is_symlink() and "." not in p.name and p.name not in _FORTUNE_SKIP:
            yield _name(root, p), "\n\n".join(clean.fortune_entries(read_text(p)))


SOURCES: list[Source] = [
    Source("python3.11-doc", "Python 3.11 documentation (reST sources)", python_docs),
    Source("linux-doc-6.1", "Linux 6.1 kernel documentation (reST and text)", linux_docs),
    Source("debian-handbook", "The Debian Administrator's Handbook, English HTML", debian_handbook),
    Source("debian-reference-en", "Debian Reference, English text",
           plain_files("usr/share/debian-reference/debian-reference.en.txt.gz")),
    Source("debian-faq", "Debian FAQ, English text", plain_files("usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")),
    Source("gnu-standards", "GNU coding standards and maintainer information (Info)", info_files),
    Source("manpages", "Linux man-pages, sections 1, 4-8 (roff)", man_pages),
    Source("manpages-dev", "Linux man-pages, sections 2 and 3 (roff)", man_pages),
    Source("perl-doc", "Perl 5.36 documentation (POD)", perl_pods),
    Source("vim-runtime", "Vim 9.0 help files", vim_help),
    Source("jargon-text", "The Jargon File 4.4.7", plain_files("usr/share/doc/jargon-text/jargon.txt.gz")),
    Source("dict-gcide", "GNU Collaborative International Dictionary of English (dictd text)", gcide),
    Source("fortunes", "fortune cookie files (the non-offensive set, minus a few)", fortunes),
]
