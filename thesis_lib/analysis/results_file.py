"""A committed results file of an experiment run by its own command (`thesis capacity`, `thesis datasize`): one
JSON document with its schema and the config hash of the code that made it, written atomically and read back
with one clear line for every way it can be unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thesis_lib.storage import read_json_document, write_text_atomic


def write_results(path: Path, document: dict[str, Any]) -> None:
    write_text_atomic(Path(path), json.dumps(document, indent=1) + "\n")


def read_results(path: Path, *, what: str, schema: str, config_hash: str, command: str,
                 error: type[Exception]) -> dict[str, Any]:
    """The document at `path`; `error` (one line naming the file and `command`, which remakes it) when it is
    missing, unreadable, of another schema than `schema`, or made by a configuration other than `config_hash`.
    `what` names the experiment in the message ("capacity", "data-size")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no {what} results file; make it with `{command}`")
    document = read_json_document(path, schema, error, f"{what} results file", kind=f"{schema} results file",
                                  remedy=f"; remake it with `{command}`")
    if document.get("config_hash") != config_hash:
        raise error(f"{path}: made by another configuration of the experiment (config hash "
                    f"{document.get('config_hash')!r}, this code's is {config_hash!r}); remake it with `{command}`")
    return document


def provenance_line(document: dict[str, Any], file: Path) -> str:
    """Where a results document's numbers come from, in one line for the page."""
    commit = (document["git"]["commit"] or "an unknown commit")[:7]
    dirty = " with uncommitted changes" if document["git"]["dirty"] else ""
    return (f"Read from `{file.as_posix()}`: {len(document['runs'])} training runs on {document['machine']['cpu']} "
            f"({document['machine']['torch_threads']} thread) in {document['wall_time_s'] / 60:.1f} min, code at "
            f"commit {commit}{dirty}, {document['created'][:10]}.")
