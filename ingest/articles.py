"""Bulk import of an existing knowledge base: JSONL (``kb.article_io`` format), Markdown and HTML articles.

Markdown: an optional front matter block (``---`` lines around ``key: value`` pairs: id, lang, product(s),
keywords, error_codes, confidence, audience, governance; lists as ``[a, b]`` or ``a, b``), the title from the
first ``#`` heading, and sections from ``##`` headings whose text names one (Symptom / 症状 / 现象,
Environment / 环境, Cause / 原因, Resolution / Solution / 解决方法 ...). Text before the first section is the
symptom. HTML: the same from ``<meta name="kb:KEY" content="...">``, ``<h1>`` (or ``<title>``) and ``<h2>``/``<h3>``
headings. Without an ``id`` an article is keyed by its file name. A file that cannot be parsed is one failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

from ingest.pipeline import Failure
from kb.article_io import ArticleRecord, parse_article, read_articles
from kb.errors import IngestError, InvalidInput

SUFFIXES: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".md": "md", ".markdown": "md", ".html": "html",
                   ".htm": "html"}  # fmt: skip
_SECTION_NAMES: Final = {
    "symptom": r"symptoms?|issue|problem|description|症状|现象|问题现象|问题描述|问题",
    "environment": r"environment|applies to|affected versions?|环境|适用范围|适用于|适用版本",
    "cause": r"root cause|cause|原因|根本原因|问题原因",
    "resolution": r"resolution|solution|fix|workaround|steps|解决方法|解决方案|解决办法|处理方法|规避方法",
}
_LIST_KEYS: Final = ("keywords", "error_codes", "products", "product")


def section_of(heading: str) -> str | None:
    """Which article section a heading names (None: not one of ours)."""
    text = heading.strip().strip("#：:").strip().lower()
    for name, pattern in _SECTION_NAMES.items():
        if re.fullmatch(f"(?:{pattern})", text):
            return name
    return None


def _value(key: str, raw: str) -> Any:
    raw = raw.strip()
    if key in _LIST_KEYS:
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        return [p.strip().strip("'\"") for p in inner.split(",") if p.strip().strip("'\"")]
    return raw.strip("'\"")


def _record(meta: dict[str, Any], title: str, sections: dict[str, list[str]], path: Path) -> dict[str, Any]:
    data: dict[str, Any] = {"id": path.stem, **meta, "title": meta.get("title") or title.strip()}
    for name, parts in sections.items():
        text = "\n".join(parts).strip()
        if text:
            data[name] = text
    if "lang" not in data:
        from kb.text import detect_lang

        data["lang"] = detect_lang(" ".join(str(v) for v in data.values() if isinstance(v, str)))
    return data


def parse_markdown(text: str, path: Path) -> dict[str, Any]:
    """A Markdown article as a flat article dict (see the module docstring)."""
    lines = text.splitlines()
    meta: dict[str, Any] = {}
    if lines and lines[0].strip() == "---":
        try:
            end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        except StopIteration:
            raise ValueError("front matter opened with --- but never closed") from None
        for line in lines[1:end]:
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, raw = line.partition(":")
                if not sep:
                    raise ValueError(f"front matter line is not 'key: value': {line!r}")
                meta[key.strip().lower()] = _value(key.strip().lower(), raw)
        lines = lines[end + 1 :]
    title = ""
    sections: dict[str, list[str]] = {}
    current = "symptom"
    for line in lines:
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading and len(heading.group(1)) == 1 and not title:
            title = heading.group(2)
            continue
        if heading:
            named = section_of(heading.group(2))
            if named:
                current = named
                continue
        sections.setdefault(current, []).append(line)
    return _record(meta, title, sections, path)


class _HtmlArticle(HTMLParser):
    _BLOCKS: Final = {"p", "div", "li", "pre", "br", "tr", "h4", "h5", "h6", "ol", "ul", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, Any] = {}
        self.title = ""
        self.h1 = ""
        self.sections: dict[str, list[str]] = {}
        self.current = "symptom"
        self._capture: str | None = None  # "title", "h1" or "heading"
        self._heading = ""
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "meta" and (values.get("name") or "").lower().startswith("kb:"):
            key = (values["name"] or "")[3:].lower()
            self.meta[key] = _value(key, values.get("content") or "")
        elif tag == "title":
            self._capture = "title"
        elif tag == "h1":
            self._capture = "h1"
        elif tag in ("h2", "h3"):
            self._capture, self._heading = "heading", ""
        elif tag in self._BLOCKS:
            self.sections.setdefault(self.current, []).append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("title", "h1"):
            self._capture = None
        elif tag in ("h2", "h3") and self._capture == "heading":
            self._capture = None
            named = section_of(self._heading)
            if named:
                self.current = named
            else:
                self.sections.setdefault(self.current, []).append(f"\n{self._heading}\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._capture == "title":
            self.title += data
        elif self._capture == "h1":
            self.h1 += data
        elif self._capture == "heading":
            self._heading += data
        else:
            self.sections.setdefault(self.current, []).append(data)


def parse_html(text: str, path: Path) -> dict[str, Any]:
    """An HTML article as a flat article dict (see the module docstring)."""
    parser = _HtmlArticle()
    parser.feed(text)
    parser.close()
    sections = {
        name: [re.sub(r"[ \t]+", " ", line).strip() for line in "".join(parts).splitlines() if line.strip()]
        for name, parts in parser.sections.items()
    }
    return _record(parser.meta, parser.h1 or parser.title, sections, path)


def files_of(source: Path) -> list[Path]:
    """The article files of a file or directory (recursive, sorted); ``IngestError`` when there are none."""
    if not source.exists():
        raise IngestError(str(source), None, "no such file or directory")
    if source.is_file():
        if source.suffix.lower() not in SUFFIXES:
            raise IngestError(str(source), None, f"unknown article format {source.suffix!r}: use .jsonl, .md or .html")
        return [source]
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise IngestError(str(source), None, "no .jsonl, .md or .html files here")
    return files


def read_article_files(source: Path) -> Iterator[tuple[int, ArticleRecord | Failure]]:
    """``(line, record or failure)`` for every article under ``source``; Markdown and HTML files count as line 1."""
    for path in files_of(source):
        kind = SUFFIXES[path.suffix.lower()]
        if kind == "jsonl":
            try:
                items = read_articles(path)
            except InvalidInput as exc:
                yield 0, Failure(str(path), 0, exc.reason)
                continue
            for line, item in items:
                yield line, item if isinstance(item, ArticleRecord) else Failure(item[0] or str(path), line, item[1])
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = parse_markdown(text, path) if kind == "md" else parse_html(text, path)
            yield 1, parse_article(data)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            yield 1, Failure(str(path), 1, str(exc))
