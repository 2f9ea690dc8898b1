"""Upstream text kept as text wherever Markdown renders it: the analyst app's headers and
captions, and the Prefect UI, which renders every string cell of a table artifact as
Markdown (its ArtifactDataTable). A coin's name comes from the API, so it is data, never
markup."""

from __future__ import annotations

import re

# What can turn text into markup: links and images ([ ] !), HTML (< >), emphasis and code
# (* _ ~ `), Streamlit's math ($) and directives (:red[..], :material/x:, :smile:), tables
# (|), entities (&), headings (#) and the escape itself; a leading + - = starts a list or
# a heading underline. Escaped with CommonMark's backslash, they show as typed.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!~$:|&#])")
_LEADING_MARK = re.compile(r"^([+\-=])")
_LEADING_NUMBER = re.compile(r"^(\d+)([.)])")

# GitHub-flavoured Markdown links bare URLs and e-mail addresses in text whatever is escaped:
# an invisible word joiner after the marker keeps them text (shown the same)
_AUTOLINKS = re.compile(r"(://|www\.|@)", flags=re.IGNORECASE)
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """`text` as it is, inside Markdown: a name from the API (or a URL) cannot become a
    link, an image the browser fetches, a heading or a Streamlit directive."""
    escaped = _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))
    escaped = _LEADING_NUMBER.sub(r"\1\\\2", _LEADING_MARK.sub(r"\\\1", escaped))
    return _AUTOLINKS.sub(lambda found: found[0][0] + WORD_JOINER + found[0][1:], escaped)
