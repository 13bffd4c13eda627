"""The training corpus of the bundled tiny model: the Python 3.11 documentation as Debian ships it.

Source: the reStructuredText sources of the Python documentation in Debian 12's
`python3.11-doc` package (`/usr/share/doc/python3.11/html/_sources/**/*.rst.txt`, 497 files,
11 MB). The documentation is distributed under the PSF License Version 2 (code examples also under
the Zero-Clause BSD licence; see `license.rst.txt` in the same tree and
`/usr/share/doc/python3.11-doc/copyright`). That licence lets anyone use, modify and distribute the
work and derivative works, provided the PSF copyright notice and licence are retained, which the
model card does. It is available offline on any Debian machine with one `apt-get install`.

The reST is reduced to prose: directives whose bodies are code, tables, indexes or comments are
dropped, literal blocks and doctest lines are dropped, the bodies of description and admonition
directives are kept, inline roles become their text. Each file becomes a list of sections
(heading, paragraphs). Files are split into training and held-out sets by a stable hash of their
path, so the split depends on nothing but the file names.
"""

import hashlib
import os
import re

DEFAULT_ROOT = "/usr/share/doc/python3.11/html/_sources"

# Directives whose body is prose worth keeping (the directive line itself is dropped).
KEEP_BODY = {
    "note", "warning", "seealso", "tip", "important", "attention", "caution", "hint", "admonition",
    "impl-detail", "function", "method", "class", "attribute", "data", "exception", "decorator",
    "decoratormethod", "classmethod", "staticmethod", "describe", "versionadded",
    "versionchanged", "deprecated", "deprecated-removed", "opcode", "cmdoption", "option",
    "envvar", "coroutinefunction", "coroutinemethod", "abstractmethod", "glossary", "rubric",
    "topic", "sidebar",
}

_UNDERLINE = re.compile(r"([=\-~*^\"#+`:.'_])\1{2,}")
_TABLE_RULE = re.compile(r"[=\-+| ]{4,}")
_DIRECTIVE = re.compile(r"\.\.\s+([\w:-]+)::\s*(.*)")
_FIELD = re.compile(r":[\w][\w -]*:(\s|$)")
_LIST_ITEM = re.compile(r"([*\-+]|#\.|\d+\.)\s+")
_ROLE = re.compile(r":[\w:-]+:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*(<[^`>]*>)?`__?")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*")


def _role_text(m):
    text = m.group(1)
    target = re.match(r"(.*?)\s*<[^<>]*>$", text)
    if target and target.group(1):
        text = target.group(1)
    text = text.lstrip("!")
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return text


def inline(text):
    """Inline reST markup -> its text."""
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = text.replace("\\ ", "").replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def sections(rst):
    """reST text -> [(heading, [paragraph, ...]), ...]; the first heading may be ''."""
    out = [["", []]]
    para = []
    skip_deeper_than = None   # inside a dropped block: skip lines indented more than this

    def flush():
        if para:
            text = inline(" ".join(para))
            if len(text) >= 20 and re.search(r"[a-z]{3}", text):
                out[-1][1].append(text)
            para.clear()

    for line in rst.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if not stripped:
            flush()
            continue
        if _UNDERLINE.fullmatch(stripped):
            if len(para) == 1:             # the line above was a heading
                out.append([inline(para[0]), []])
                para.clear()
            continue
        if _TABLE_RULE.fullmatch(stripped) or stripped[0] in "|+":
            flush()
            continue
        if stripped.startswith(".."):
            flush()
            m = _DIRECTIVE.match(stripped)
            if not (m and m.group(1) in KEEP_BODY):
                skip_deeper_than = indent
            continue
        if _FIELD.match(stripped) or stripped.startswith((">>>", "...")):
            continue
        if _LIST_ITEM.match(stripped):     # each list item is a paragraph of its own
            flush()
            stripped = _LIST_ITEM.sub("", stripped, count=1)
        para.append(stripped)
        if stripped.endswith("::"):        # a literal block follows
            para[-1] = stripped[:-2].rstrip() + (":" if stripped[:-2].strip() else "")
            flush()
            skip_deeper_than = indent
    flush()
    return [(h, ps) for h, ps in out if ps]


def is_held_out(relpath):
    """About 1 file in 20, chosen by a stable hash of its path."""
    return hashlib.sha256(relpath.encode()).digest()[0] % 20 == 0


def load(root=DEFAULT_ROOT):
    """(train, held_out): lists of (relpath, sections), sorted by path."""
    if not os.path.isdir(root):
        raise SystemExit(f"{root} not found: install Debian's python3.11-doc package "
                         "(apt-get install python3.11-doc)")
    files = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rst.txt"):
                files.append(os.path.relpath(os.path.join(dirpath, name), root))
    train, held = [], []
    for rel in sorted(files):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            secs = sections(f.read())
        if secs:
            (held if is_held_out(rel) else train).append((rel, secs))
    return train, held


def psf_license(root=DEFAULT_ROOT, release="3.11"):
    """The PSF License Agreement as the documentation states it (license.rst.txt), as plain text:
    the licence of the corpus, which derivative works must carry."""
    with open(os.path.join(root, "license.rst.txt"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("PSF LICENSE AGREEMENT FOR PYTHON |release|")
    end = text.index("BEOPEN.COM LICENSE AGREEMENT", start)
    lines = []
    for line in text[start:end].replace("|release|", release).splitlines():
        if line.strip().startswith(".. parsed-literal::"):
            continue
        lines.append(line[3:] if line.startswith("   ") else line)
    return "\n".join(lines).strip() + "\n"


def document_text(secs):
    """One file's sections as plain text: heading line, blank line, paragraphs."""
    parts = []
    for heading, paras in secs:
        if heading:
            parts.append(heading)
        parts.extend(paras)
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    tr, ho = load()
    n_tr = sum(len(document_text(s)) for _, s in tr)
    n_ho = sum(len(document_text(s)) for _, s in ho)
    print(f"train: {len(tr)} files, {n_tr} chars; held out: {len(ho)} files, {n_ho} chars")
    print(document_text(tr[len(tr) // 2][1])[:1500])
