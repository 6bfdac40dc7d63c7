// The corpus builder's cleaning, dedup and split functions (training/corpus/*.py), run through
// training/corpus/cli.py by Debian's python3. Expected outputs are written by hand from what each format
// means, not copied from the code's output. The PyTorch parts of training/ (train.py, export.py,
// tokenizer.py) are not exercised here: they need torch, transformers and tokenizers, which CI lacks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ROOT } from "../paths.js";

const CLI = join(ROOT, "training/corpus/cli.py");

/** One request to cli.py; fails the test with python's stderr if it did not answer. */
function corpus(request: Record<string, unknown>): any {
  const r = spawnSync("python3", [CLI], { input: JSON.stringify(request), encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, `cli.py failed: ${r.error ?? ""}${r.stderr}`);
  return JSON.parse(r.stdout);
}

test("HTML: head, scripts and navigation dropped; blocks become paragraphs; <pre> keeps its spaces", () => {
  const html = `<html><head><title>T</title><style>p { color: red }</style></head><body>
<div class="navheader">Prev <a href="x">Next</a></div>
<h1>Pipes &amp; FIFOs</h1>
<p>A pipe is   a <b>byte</b>
stream.</p>
<script>var x = 1;</script>
<ul><li>one</li><li>two</li></ul>
<pre>int  x;
  y = 2;</pre>
</body></html>`;
  assert.equal(corpus({ op: "html", text: html }).text,
    "Pipes & FIFOs\n\nA pipe is a byte stream.\n\n- one\n\n- two\n\nint  x;\n  y = 2;");
});

test("roff: man macros, font escapes, special characters, no-fill blocks and .TP tags", () => {
  const roff = [
    '.\\" Copyright line that must not appear',
    '.TH PIPE 7 2022-12-04 "Linux man-pages 6.03"',
    ".SH NAME",
    "pipe \\- overview of pipes",
    ".SH DESCRIPTION",
    "A pipe is created using",
    ".BR pipe (2),",
    "which returns a",
    '.IR "read end" .',
    ".PP",
    "Use \\fBwrite\\fP(2) \\(em or not.",
    ".nf",
    "  int fd[2];",
    "  pipe(fd);",
    ".fi",
    ".TP",
    ".B O_NONBLOCK",
    "Nonblocking I/O.",
  ].join("\n");
  assert.equal(corpus({ op: "roff", text: roff }).text, [
    "PIPE(7)", "NAME", "pipe - overview of pipes", "DESCRIPTION",
    "A pipe is created using pipe(2), which returns a read end.",
    "Use write(2) \u2014 or not.", "  int fd[2];\n  pipe(fd);", "O_NONBLOCK", "Nonblocking I/O.",
  ].join("\n\n"));
  assert.equal(corpus({ op: "roff", text: ".so man2/pipe.2\n" }).text, "", "a .so link page has no text of its own");
});

test("reST: adornments, comments, roles, links, directives and literal blocks", () => {
  const rst = `.. SPDX-License-Identifier: GPL-2.0

=========
The Title
=========

Use :func:\`os.pipe\` and \`\`read()\`\` with :class:\`~io.BufferedReader\`.
See \`the docs <https://example.org>\`_ for more.

.. note:: Pipes are one-way.

.. toctree::
   :maxdepth: 2

   intro
   usage

Example::

    fd = os.pipe()

.. function:: pipe()

   Return a pair of file descriptors.
`;
  assert.equal(corpus({ op: "rst", text: rst }).text,
    "The Title\n\nUse os.pipe and read() with BufferedReader.\nSee the docs for more.\n\nPipes are one-way.\n\n" +
    "Example:\n\n    fd = os.pipe()\n\npipe()\n\n   Return a pair of file descriptors.");
});

test("POD: headings, formatting codes, entities, verbatim paragraphs; =begin blocks and code after =cut dropped", () => {
  const pod = `=head1 NAME

perlpipe - B<pipes> in I<Perl>

=head2 Usage

Call C<pipe(READ, WRITE)> and see L<perlipc/"Pipes">. E<lt>okE<gt>

    my $x = 1;

=begin html

<p>skip</p>

=end html

=cut

sub code { }
`;
  assert.equal(corpus({ op: "pod", text: pod }).text,
    "NAME\n\nperlpipe - pipes in Perl\n\nUsage\n\nCall pipe(READ, WRITE) and see perlipc Pipes. <ok>\n\n    my $x = 1;");
});

test("GCIDE: pronunciation and source tags dropped, accent codes become letters, stress marks removed", () => {
  const entry = 'Blame \\Blame\\ (bl[=a]m), v. t. [OE. blamen, F. bl[^a]mer.]\n   To censure; -- {Blam"a*ble}, a.\n   [1913 Webster]\n';
  assert.equal(corpus({ op: "gcide", text: entry }).text, "Blame, v. t. [OE. blamen, F. bl\u00e2mer.]\n   To censure; -- Blamable, a.");
});

test("normalize: CRLF, trailing blanks, blank runs, odd spaces and control characters", () => {
  assert.equal(corpus({ op: "normalize", text: "\n\na\r\nb  \t\n\n\n\nc\u00a0d\u200b\u0007\tz\n\n" }).text, "a\nb\n\nc d\tz");
});

test("dedup: a long paragraph is kept only where it first appears, whatever its whitespace; short ones always", () => {
  const intro = "Intro paragraph that is long enough to count as a real paragraph.";
  const a = `${intro}\n\nShort.\n\nUnique paragraph of document a, long enough to be deduplicated.`;
  const b = `${intro}\n\nShort.\n\nDocument b has its own   long paragraph,\nwrapped differently.`;
  const c = "Intro   paragraph that is long enough to count\nas a real paragraph.";
  const out = corpus({ op: "dedup", docs: [["a", a], ["b", b], ["c", c]], min_chars: 40, min_doc_chars: 10 }).docs;
  assert.deepEqual(out, [["a", a], ["b", "Short.\n\nDocument b has its own   long paragraph,\nwrapped differently."]]);
});

test("chunk: long documents are cut at paragraph ends", () => {
  const p = ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"];
  assert.deepEqual(corpus({ op: "chunk", text: p.join("\n\n"), max_chars: 25 }).pieces, [`${p[0]}\n\n${p[1]}`, p[2]]);
  assert.deepEqual(corpus({ op: "chunk", text: p.join("\n\n"), max_chars: 100 }).pieces, [p.join("\n\n")]);
});

test("split: validation membership is SHA-256 of the id below the fraction, capped by bytes", () => {
  const ids = Array.from({ length: 300 }, (_, i) => `pkg:doc${i}`);
  const score = (id: string) => Number(createHash("sha256").update(id).digest().readBigUInt64BE(0)) / 2 ** 64;
  const expectedVal = ids.filter((id) => score(id) < 0.1);
  assert.ok(expectedVal.length > 10 && expectedVal.length < 60, "the fixture should put some documents in validation");
  const out = corpus({ op: "split", ids, fraction: 0.1 });
  assert.deepEqual(out.val, expectedVal);
  assert.deepEqual(out.train, ids.filter((id) => score(id) >= 0.1));
  // Each 8-byte text costs 10 bytes with its separator: a 25-byte cap admits the first two.
  const capped = corpus({ op: "split", ids, texts: ids.map(() => "12345678"), fraction: 0.1, max_val_bytes: 25 });
  assert.deepEqual(capped.val, expectedVal.slice(0, 2));
  assert.equal(capped.train.length, ids.length - 2);
});
