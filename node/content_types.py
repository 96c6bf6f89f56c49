"""The content type ``send`` gives a file: from its extension, the same on every machine.

``mimetypes.guess_type`` reads the host's ``/etc/mime.types`` as well, so the
same file could be sent as one type from one server and another from the
next.  A table of our own, then Python's built-in defaults only.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePath

__all__ = ["DEFAULT_CONTENT_TYPE", "content_type_of"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: What departments exchange most, and where Python's defaults have none or another.
_OURS = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".ofd": "application/ofd",  # GB/T 33190, the Chinese fixed-layout document format
}
_DEFAULTS = mimetypes.MimeTypes(filenames=())  # Python's built-in table, not the host's


def content_type_of(file: str) -> str:
    """``report.json`` -> ``application/json``; ``-`` (stdin) or unknown -> octet-stream."""
    if file == "-":
        return DEFAULT_CONTENT_TYPE
    suffix = PurePath(file).suffix.lower()
    if suffix in _OURS:
        return _OURS[suffix]
    guessed, encoding = _DEFAULTS.guess_type(PurePath(file).name, strict=True)
    if guessed is None or encoding is not None:  # report.csv.gz is a gzip file, not CSV
        return DEFAULT_CONTENT_TYPE
    return guessed
