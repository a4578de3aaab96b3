"""Unknown keys in a JSONL row are errors: a misspelt field ("stepp") would otherwise be read as
absent and its default used in silence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from culture_tasks.metadata import with_hints


def check_row_keys(row: Mapping, known: Iterable[str], where: str, kind: str,
                   error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``where`` (file:line), each unknown key (with the nearest known key
    when one is close) and the keys a ``kind`` row may have."""
    known = sorted(set(known))
    unknown = sorted(k for k in row if k not in known)
    if not unknown:
        return
    raise error(f"{where}: unknown key(s) {with_hints(unknown, known)} in a {kind} row; rename or remove them "
                f"(known keys: {', '.join(known)})")
