"""Markup strippers that turn the formats found in Debian's documentation packages into plain text.

Standard library only (html.parser, re, unicodedata) so that the corpus builds on any Debian machine.
Each function takes the whole file as a string and returns plain text whose paragraphs are separated
by one blank line; `normalize` is applied last by the callers, not inside each stripper.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

# ---------------------------------------------------------------------------------------------------
# whitespace


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BLANK_RUN = re.compile(r"\n{3,}")
_ODD_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")


def normalize(text: str) -> str:
    """Unicode NFC, LF line ends, no control characters (tabs kept: code uses them), no trailing spaces,
    at most one blank line in a row, no blank lines at either end."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _ODD_SPACES.sub(" ", _ZERO_WIDTH.sub("", text))
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", text).strip("\n")


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs: runs of non-blank lines."""
    return [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


# ---------------------------------------------------------------------------------------------------
# HTML


_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_SKIP_TAGS = {"script", "style", "head", "title", "noscript", "svg", "math", "template", "button", "form"}
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}
# Navigation chrome of Sphinx, DocBook and Publican pages: repeated on every page, never prose.
_SKIP_CLASSES = {"navheader", "navfooter", "related", "sphinxsidebar", "footer", "breadcrumbs", "toc",
                 "headerlink", "docnav", "navigation"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []  # finished paragraphs
        self.words: list[str] = []  # inline text of the paragraph being read
        self.skip_depth = 0  # >0 inside an element whose text is dropped
        self.skip_stack: list[str] = []
        self.pre_depth = 0

    def _flush(self) -> None:
        text = "".join(self.words)
        self.words = []
        if self.pre_depth == 0:
            text = re.sub(r"\s+", " ", text).strip()
        else:
            text = text.strip("\n")
        if text.strip():
            self.blocks.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = set((dict(attrs).get("class") or "").split())
        if self.skip_depth > 0:
            if tag not in _VOID_TAGS:
                self.skip_stack.append(tag)
                self.skip_depth += 1
            return
        if tag in _SKIP_TAGS or classes & _SKIP_CLASSES:
            if tag not in _VOID_TAGS:
                self.skip_stack = [tag]
                self.skip_depth = 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "pre":
            self.pre_depth += 1
        elif tag == "li":
            self.words.append("- ")
        elif tag in ("td", "th"):
            self.words.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self.skip_depth > 0:
            # Pop to the matching open tag; HTML in the wild leaves some tags unclosed.
            if tag in self.skip_stack:
                while self.skip_stack:
                    self.skip_depth -= 1
                    if self.skip_stack.pop() == tag:
                        break
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "pre" and self.pre_depth > 0:
            self.pre_depth -= 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip_depth == 0 and tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip_depth == 0:
            self.words.append(data)

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self.blocks)


def html_to_text(source: str) -> str:
    """Visible text of an HTML page: scripts, styles, the head and navigation bars dropped, each block
    element (p, li, h1, pre, ...) a paragraph, inline whitespace collapsed except inside <pre>."""
    parser = _TextExtractor()
    parser.feed(source)
    parser.close()
    return parser.text()


# ---------------------------------------------------------------------------------------------------
# roff (man pages)


_ROFF_SPECIAL = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d",
    "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122",
    "de": "\u00b0", "mu": "\u00d7", "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264", ">=": "\u2265",
    "!=": "\u2260", "->": "\u2192", "<-": "\u2190", "ti": "~", "ha": "^", "rs": "\\", "ga": "`",
    "Fo": "\u00ab", "Fc": "\u00bb", "sq": "\u25a1", "pc": "\u00b7", "ss": "\u00df", "fo": "\u2039",
    "fc": "\u203a", "ba": "|", "br": "|", "ul": "_", "dg": "\u2020", "sc": "\u00a7", "lh": "\u261c",
    "rh": "\u261e",
}
_ROFF_STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "S": ""}

_ROFF_ESCAPE = re.compile(
    r"\\(?:"
    r"\((?P<two>..)"  # \(xx special character
    r"|\[(?P<long>[^\]]*)\]"  # \[name] special character
    r"|\*(?:\((?P<str2>..)|\[(?P<strl>[^\]]*)\]|(?P<str1>.))"  # \*x string
    r"|f(?:\(..|\[[^\]]*\]|.)"  # \fB font change
    r"|s[-+]?(?:\d+|\(\d\d|\[\d+\])"  # \s-1 size change
    r"|[kmFMnYgV](?:\(..|\[[^\]]*\]|.)"  # registers, marks, colours: no visible text
    r"|[hvwlLNDbxoRSXZAB]'[^']*'"  # \h'..' motions and other quoted-argument escapes
    r"|(?P<one>.)"  # \- \e \& \c and friends
    r")"
)


def _roff_escape(m: re.Match[str]) -> str:
    if m.group("two") is not None:
        return _ROFF_SPECIAL.get(m.group("two"), "")
    if m.group("long") is not None:
        name = m.group("long")
        if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return _ROFF_SPECIAL.get(name, "")
    for g in ("str2", "strl", "str1"):
        if m.group(g) is not None:
            return _ROFF_STRINGS.get(m.group(g), "")
    one = m.group("one")
    if one is None:
        return ""
    return {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "|": "", "^": "", "&": "",
            "c": "", "%": "", ")": "", "/": "", ",": "", "'": "'", "`": "`", ".": ".", "t": "\t",
            "!": "", "{": "", "}": "", "\"": ""}.get(one, one)


def _roff_inline(text: str) -> str:
    # A \" comment runs to the end of the line.
    text = re.sub(r'\\".*', "", text)
    return _ROFF_ESCAPE.sub(_roff_escape, text)


def _roff_args(rest: str) -> list[str]:
    """Request arguments: blank-separated, double quotes group, "" inside quotes is a quote."""
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n:
            break
        if rest[i] == '"':
            i += 1
            buf = []
            while i < n:
                if rest[i] == '"':
                    if i + 1 < n and rest[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(rest[i])
                i += 1
            args.append("".join(buf))
        else:
            j = i
            while j < n and rest[j] not in " \t":
                j += 1
            args.append(rest[i:j])
            i = j
    return args


_FONT_MACROS = {"B", "I", "R", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI", "CW", "UR", "MT"}
_PARAGRAPH_MACROS = {"PP", "LP", "P", "sp", "br", "TP", "IP", "HP", "TQ", "SH", "SS", "RS", "RE", "in",
                     "ne", "bp", "Sh", "Ss", "Pp", "Bl", "El", "It", "Bd", "Ed"}


def roff_to_text(source: str) -> str:
    """Text of a man page in the man(7) macros: headings, paragraphs refilled into one line each,
    .nf/.EX blocks kept line by line, font and size escapes dropped, special characters decoded,
    comments and unknown requests dropped. A page that is only a `.so` link gives an empty string."""
    out: list[str] = []  # finished paragraphs
    words: list[str] = []
    lines_nofill: list[str] = []
    nofill = False
    skip_until: str | None = None  # inside .de/.ig/table blocks that hold no prose
    join_next = False
    tag_pending = False  # the line after .TP is the item's tag: a paragraph of its own

    def flush() -> None:
        nonlocal words, lines_nofill
        if nofill or lines_nofill:
            block = "\n".join(lines_nofill).strip("\n")
            if block.strip():
                out.append(block)
            lines_nofill = []
        text = re.sub(r"\s+", " ", " ".join(words)).strip()
        if text:
            out.append(text)
        words = []

    def emit(text: str) -> None:
        nonlocal join_next, tag_pending
        if nofill:
            lines_nofill.append(text)
        elif join_next and words:
            words[-1] += text
        else:
            words.append(text)
        join_next = False
        if tag_pending:
            tag_pending = False
            flush()

    for raw in source.split("\n"):
        if skip_until is not None:
            if raw.startswith(skip_until):
                skip_until = None
            continue
        if raw.startswith(('.\\"', "'\\\"", '\\"')) or raw.strip() == ".":
            continue
        if raw.startswith((".", "'")):
            m = re.match(r"[.'][ \t]*(\S+)[ \t]*(.*)", raw)
            if not m:
                continue
            name, rest = m.group(1), m.group(2)
            if name == "so":
                return ""
            if name in ("de", "de1", "am", "ig"):
                skip_until = ".."
                continue
            if name == "TS":
                flush()
                skip_until = ".TE"
                continue
            if name in ("nf", "EX"):
                flush()
                nofill = True
                continue
            if name in ("fi", "EE"):
                flush()
                nofill = False
                continue
            if name == "TH":
                args = _roff_args(_roff_inline(rest))
                if args:
                    out.append(args[0] + (f"({args[1]})" if len(args) > 1 else ""))
                continue
            if name in ("SH", "SS", "Sh", "Ss"):
                flush()
                heading = " ".join(_roff_args(_roff_inline(rest)))
                if heading:
                    out.append(heading)
                continue
            if name in ("IP", "TQ"):
                flush()
                args = _roff_args(_roff_inline(rest))
                if args and args[0]:
                    emit(args[0])
                continue
            if name in _PARAGRAPH_MACROS:
                flush()
                tag_pending = name == "TP"
                continue
            if name in _FONT_MACROS:
                args = _roff_args(_roff_inline(rest))
                if name in ("B", "I", "R", "SM", "SB", "CW", "UR", "MT"):
                    if args:
                        emit(" ".join(args))
                else:
                    # Alternating-font macros glue their arguments: .BR pipe (2), -> pipe(2),
                    emit("".join(args))
                continue
            if name in ("UE", "ME"):
                args = _roff_args(_roff_inline(rest))
                if args:
                    join_next = True
                    emit("".join(args))
                continue
            continue  # any other request (.ad, .hy, .ft, .ds, .nr, .if, ...) carries no prose
        text = _roff_inline(raw)
        if nofill:
            emit(text)
        elif text.strip():
            emit(text.strip())
        else:
            flush()
    flush()
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------------
# reStructuredText (Linux and Python documentation sources)


_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_RST_ROLE = re.compile(r":(?:[A-Za-z][\w.+-]*:)+`([^`]+)`")
_RST_INLINE_LITERAL = re.compile(r"``([^`]+)``")
_RST_INTERPRETED = re.compile(r"`([^`<]+?)(?:\s*<[^`>]*>)?`_{0,2}")
_RST_KEEP_DIRECTIVE_ARG = {
    "function", "method", "class", "attribute", "data", "exception", "decorator", "describe", "option",
    "envvar", "c:function", "c:macro", "c:type", "c:member", "c:var", "c:struct", "c:union", "c:enum",
    "py:function", "py:method", "py:class", "py:attribute", "classmethod", "staticmethod", "coroutinefunction",
    "coroutinemethod", "opcode", "cmdoption", "abstractmethod", "decoratormethod", "pdbcommand", "index",
}


def _rst_role_text(inner: str) -> str:
    # :func:`title <target>` shows the title, :class:`~a.b.C` shows C, :ref:`!x` shows x.
    m = re.fullmatch(r"(.*?)\s*<[^<>]*>", inner, re.S)
    if m and m.group(1):
        return m.group(1)
    inner = inner.lstrip("!")
    if inner.startswith("~"):
        return inner[1:].rsplit(".", 1)[-1]
    return inner


def rst_inline(text: str) -> str:
    """Inline reST markup removed: roles, literals, interpreted text, hyperlink references."""
    text = _RST_ROLE.sub(lambda m: _rst_role_text(m.group(1)), text)
    text = _RST_INLINE_LITERAL.sub(r"\1", text)
    text = _RST_INTERPRETED.sub(lambda m: m.group(1).strip(), text)
    text = re.sub(r"\|(\w[\w -]*)\|", r"\1", text)  # |substitution|
    text = re.sub(r"(?<=\w)\\ ", "", text)  # escaped space
    return text


def rst_to_text(source: str) -> str:
    """Plain text of a reST document: section adornment lines dropped (titles kept), directives dropped
    with their options (signature directives such as `.. function::` keep their argument), comments
    dropped, `::` literal markers reduced to `:`, inline roles and literals unwrapped. Indented literal
    blocks are kept as they are."""
    out: list[str] = []
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if _RST_ADORNMENT.match(line):
            # A section over- or underline or a transition; the title beside it stays.
            i += 1
            continue
        m = re.match(r"^(\s*)\.\.\s+([\w:.-]+)::\s*(.*)$", line)
        if m:
            indent, name, arg = m.group(1), m.group(2), m.group(3)
            if name in _RST_KEEP_DIRECTIVE_ARG and arg and name != "index":
                out.append(indent + rst_inline(arg))
            elif name in ("note", "warning", "tip", "important", "attention", "caution", "hint", "seealso",
                          "versionadded", "versionchanged", "deprecated") and arg:
                out.append(indent + rst_inline(arg))
            # Skip the directive's option lines (":name: value" indented below it).
            i += 1
            while i < len(lines) and re.match(r"^\s+:[\w -]+:", lines[i]):
                i += 1
            # Content of directives that hold no prose (images, toctrees, includes) is skipped too.
            if name in ("toctree", "image", "figure", "include", "literalinclude", "kernel-doc", "raw",
                        "only", "highlight", "contents", "sectionauthor", "moduleauthor", "module",
                        "currentmodule", "index", "csv-table", "kernel-feat", "kernel-abi", "kernel-include",
                        "tabularcolumns", "cssclass", "flat-table", "productionlist", "audit-event",
                        "audit-event-table", "impl-detail", "testsetup", "testcleanup", "raw:html"):
                base = len(indent)
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
                    i += 1
            continue
        if re.match(r"^\s*\.\.\s+(\S.*)?$", line) and not re.match(r"^\s*\.\.\s+\w[\w:.-]*::", line):
            # A comment, a hyperlink target (.. _name:) or a substitution definition, with its indented body.
            base = len(line) - len(line.lstrip())
            i += 1
            while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > base:
                i += 1
            continue
        if stripped == "::":
            i += 1
            continue
        if line.rstrip().endswith("::"):
            line = line.rstrip()[:-1]
        out.append(rst_inline(line))
        i += 1
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# POD (Perl documentation)


_POD_CODE = re.compile(r"[BICFSXZLE]<(?:<+\s.*?\s>+|[^<>]*)>", re.S)
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_code(m: re.Match[str]) -> str:
    whole = m.group(0)
    kind = whole[0]
    inner = whole[2:-1]
    if inner.startswith("<"):
        inner = inner.strip("<>").strip()
    if kind in ("X", "Z"):
        return ""
    if kind == "E":
        if inner.isdigit():
            return chr(int(inner))
        if inner.startswith("0x"):
            return chr(int(inner, 16))
        return _POD_ENTITIES.get(inner, html.unescape(f"&{inner};"))
    if kind == "L":
        # L<text|target> shows text; L<name/"section"> shows both.
        if "|" in inner:
            return inner.split("|", 1)[0]
        return inner.replace('/"', " ").replace('"', "")
    return inner


def pod_inline(text: str) -> str:
    """POD formatting codes removed, innermost first, so nested codes unwrap too."""
    for _ in range(8):
        new = _POD_CODE.sub(_pod_code, text)
        if new == text:
            break
        text = new
    return text


def pod_to_text(source: str) -> str:
    """Text of a POD document: =head lines become headings, =item lines items, =begin/=end and =for
    blocks dropped, =cut ... =pod code sections dropped, formatting codes unwrapped; verbatim
    (indented) paragraphs kept."""
    out: list[str] = []
    in_pod = not source.lstrip().startswith(("#!", "package ", "use "))
    skip_block: str | None = None
    for para in re.split(r"\n[ \t]*\n", source):
        first = para.lstrip("\n")
        if first.startswith("="):
            m = re.match(r"=(\w+)\s*(.*)", first, re.S)
            if not m:
                continue
            cmd, arg = m.group(1), m.group(2).strip()
            if cmd == "cut":
                in_pod = False
                continue
            in_pod = True
            if skip_block is not None:
                if cmd == "end" and arg.split()[:1] == [skip_block]:
                    skip_block = None
                continue
            if cmd == "begin":
                skip_block = arg.split()[0] if arg else ""
                continue
            if cmd in ("head1", "head2", "head3", "head4"):
                out.append(pod_inline(arg))
            elif cmd == "item":
                if arg and arg not in ("*", "+", "-"):
                    out.append(pod_inline(arg))
            # =pod, =over, =back, =for, =encoding carry no text.
            continue
        if not in_pod or skip_block is not None:
            continue
        if para[:1] in (" ", "\t"):
            out.append(para.strip("\n"))
        else:
            out.append(pod_inline(para.strip("\n")))
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Info, Vim help, dictd (GCIDE), fortune files


def info_to_text(source: str) -> str:
    """Text of a GNU Info file: node separators and `File: ... Node: ...` headers dropped, menu lines
    kept as plain list items, the tag table at the end dropped."""
    source = re.split(r"\x1f\nTag Table:", source, maxsplit=1)[0]
    out: list[str] = []
    for node in source.split("\x1f"):
        lines = node.strip("\n").split("\n")
        if lines and lines[0].startswith("File: "):
            lines = lines[1:]
        if lines and lines[0].startswith(("Indirect:", "Local Variables")):
            continue
        text = "\n".join(line for line in lines if line.strip() != "* Menu:")
        text = re.sub(r"\*[Nn]ote\s+([^:]+)::", r"see \1", text)
        text = re.sub(r"^\* ([^:\n]+)::", r"- \1", text, flags=re.M)
        out.append(text)
    return "\n\n".join(out)


def vimhelp_to_text(source: str) -> str:
    """Text of a Vim help file: *tag* anchors dropped, |link| bars and `>`/`<` example markers removed,
    the closing modeline dropped."""
    out: list[str] = []
    for line in source.split("\n"):
        if re.match(r"^\s*vim:.*:$", line) or re.fullmatch(r"[=\-]{20,}", line.strip()):
            continue
        line = re.sub(r"(?:^|(?<=\s))\*[^*\s|]+\*(?=\s|$)", "", line)
        line = re.sub(r"\|([^|\s]+)\|", r"\1", line)
        line = re.sub(r"\s>$", "", line)  # "Example: >" opens an example block
        if line.strip() in ("<", ">"):
            continue
        line = re.sub(r"^<(?=\s)", "", line)
        out.append(line.rstrip())
    return "\n".join(out)


# GCIDE writes letters with diacritics as bracketed ASCII codes: [=a] is a with a macron, [a^] a with
# a breve, [ae] the ligature. Marks before the letter become combining characters (NFC later composes).
_GCIDE_NAMED = {
    "ae": "\u00e6", "AE": "\u00c6", "oe": "\u0153", "OE": "\u0152", "eth": "\u00f0", "thorn": "\u00fe",
    "ng": "\u014b", "deg": "\u00b0", "sect": "\u00a7", "root": "\u221a", ",c": "\u00e7", "*a": "\u00e5",
    "imac": "\u012b", "aum": "\u00e4", "eum": "\u00eb", "ium": "\u00ef", "oum": "\u00f6", "uum": "\u00fc",
    "=oo": "\u014d\u014d", "oo^": "\u014f\u014f", "add": "\u00e4", "asl": "a", "udd": "\u00fc", "=ae": "\u01e3",
}
_GCIDE_MARK = {"=": "\u0304", "-": "\u0304", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303",
               '"': "\u0308", ".": "\u0307"}
_GCIDE_CODE = re.compile(r"\[(?:(?P<name>" + "|".join(re.escape(k) for k in _GCIDE_NAMED) + r")"
                         r"|(?P<mark>[=\-'`^~\".])(?P<letter>[A-Za-z])|(?P<brevis>[A-Za-z])\^)\]")
# "Blame \Blame\ (bl[=a]m), v. t." -> "Blame, v. t.": the syllabified form and the pronunciation go.
_GCIDE_HEAD = re.compile(r"^(\S[^\\\n]*?) \\[^\\\n]*\\(?:,? ?\\[^\\\n]*\\)*\s*(?:\([^)\n]*\))?")


def _gcide_char(m: re.Match[str]) -> str:
    if m.group("name"):
        return _GCIDE_NAMED[m.group("name")]
    if m.group("brevis"):
        return m.group("brevis") + "\u0306"
    return m.group("letter") + _GCIDE_MARK[m.group("mark")]


def gcide_to_text(source: str) -> str:
    """Dictionary entries of the dictd GCIDE text: source tags such as [1913 Webster] dropped, the
    headword line's syllabified form and pronunciation dropped, accent codes ([=a], [ae]) turned into
    letters, syllable and stress marks inside words (Blam"a*ble*ness) and cross-reference braces removed."""
    out: list[str] = []
    for line in source.split("\n"):
        s = line.strip()
        if re.fullmatch(r"\[(?:[^\]]*Webster[^\]]*|PJC|WordNet[^\]]*|Chambers[^\]]*|Century[^\]]*|[A-Z]{2,4})\]", s):
            continue
        if line[:1] not in ("", " ", "\t"):
            line = _GCIDE_HEAD.sub(lambda m: m.group(1), line)
        line = re.sub(r"\s*\[(?:1913 Webster|PJC|Webster 1913 Suppl\.)\]", "", line)
        line = _GCIDE_CODE.sub(_gcide_char, line.replace("{", "").replace("}", ""))
        line = re.sub(r"(?<=[^\W\d_])[*\"`](?=[^\W\d_])", "", line)
        out.append(line)
    return unicodedata.normalize("NFC", "\n".join(out))


def fortune_entries(source: str) -> list[str]:
    """The entries of a fortune file, which `%` lines separate."""
    return [e.strip("\n") for e in re.split(r"^%\s*$", source, flags=re.M) if e.strip()]
