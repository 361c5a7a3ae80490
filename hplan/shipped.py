"""Finding shipped definition files (`tasks/*.toml`, `agents/*.toml`) by name or path."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


def available(folder: Path) -> dict[str, Path]:
    """Names (each file's `name`, else its stem) -> files, for every .toml in `folder`."""
    out = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            name = tomllib.loads(path.read_text()).get("name", path.stem)
        except tomllib.TOMLDecodeError:
            name = path.stem
        out[name] = path
    return out


def resolve(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    """The file a shipped name or a path points to; a clear error otherwise."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ValueError(f"{path}: {kind} file not found. Fix: check the path")
        return path
    known = available(folder)
    if str(name_or_path) not in known:
        raise ValueError(f"unknown {kind} {str(name_or_path)!r}. Known {kind}s: "
                         f"{', '.join(known)}. Fix: pick one of these or pass a .toml path")
    return known[str(name_or_path)]


def base_file(raw: dict, where: Where, source: str, folder: Path, kind: str,
              seen: tuple[str, ...]) -> Path | None:
    """The file a definition's `base = "..."` names (a shipped name, or a path relative
    to the file), None without one; a clear error for a bad name or a cycle."""
    base = raw.get("base")
    if base is None:
        return None
    if not isinstance(base, str):
        raise where.error("base", f"base = {base!r} is not a name or path",
                          f'write base = "<{kind} name>"')
    try:
        near = Path(source).parent / base
        path = resolve(near if base.endswith(".toml") else base, folder, kind)
    except ValueError as e:
        raise where.error("base", str(e).split(". Fix:")[0],
                          str(e).split("Fix: ")[-1]) from None
    if str(path.resolve()) in seen:
        raise where.error("base", f"base = {base!r} leads back to this file",
                          "make the chain of bases end in a file with no base")
    return path


def read_toml(text: str, source: str) -> dict:
    """Parse TOML; a syntax error becomes `SOURCE:LINE:COL: ... Fix: ...`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        line, col = (m.group(1), m.group(2)) if m else ("1", "1")
        raise ValueError(f"{source}:{line}:{col}: not valid TOML ({e}). "
                         "Fix: check quotes, brackets and '=' signs") from None


class Where:
    """Finds the line/column of a key in a TOML file so errors can point at it."""

    def __init__(self, text: str, source: str):
        self.lines, self.source = text.split("\n"), source

    def of(self, key: str, table: str | None = None, nth: int = 0) -> tuple[int, int]:
        """Line and column of `key`: the `nth` top-level one, or the first inside the
        `nth` `[table]` / `[[table]]` (the table header where the key is absent)."""
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        is_head = [bool(re.match(r"^\s*\[", ln)) for ln in self.lines]
        if table is None:
            first = is_head.index(True) if True in is_head else len(self.lines)
            hits = [i for i in range(first) if pat.match(self.lines[i])]
            hits = hits or [i for i, ln in enumerate(self.lines) if pat.match(ln)]
        else:
            heads = [i for i, ln in enumerate(self.lines)
                     if re.match(rf"^\s*\[\[?{re.escape(table)}\]\]?\s*$", ln)]
            if not heads:
                return 1, 1
            h = heads[min(nth, len(heads) - 1)]
            end = next((i for i in range(h + 1, len(self.lines)) if is_head[i]),
                       len(self.lines))
            hits = [i for i in range(h + 1, end) if pat.match(self.lines[i])] or [h]
            nth = 0
        if len(hits) > nth:
            i = hits[nth]
            col = self.lines[i].find(key)
            return i + 1, (col if col >= 0 else 0) + 1
        return 1, 1

    def error(self, key: str, msg: str, fix: str, table: str | None = None,
              nth: int = 0) -> ValueError:
        line, col = self.of(key, table, nth)
        return ValueError(f"{self.source}:{line}:{col}: {msg}. Fix: {fix}")
