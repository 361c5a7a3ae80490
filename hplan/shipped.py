"""Finding shipped definition files (`tasks/*.toml`, `agents/*.toml`) by name or path."""

from __future__ import annotations

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


def read_toml(text: str, source: str) -> dict:
    """Parse TOML; a syntax error becomes `SOURCE:LINE:COL: ... Fix: ...`."""
    import re

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        line, col = (m.group(1), m.group(2)) if m else ("1", "1")
        raise ValueError(f"{source}:{line}:{col}: not valid TOML ({e}). "
                         "Fix: check quotes, brackets and '=' signs") from None
