"""Path globs: normalizing, matching, and a containment check that is cheap on any input.

Permission containment asks whether a child's pattern is within its parent's: every path
the child's matches, the parent's must match too. Comparing the patterns as strings
(``fnmatch(child, parent)``) gets this wrong both ways (``/data/*`` "matches"
``/data/?`` as text, yet ``*`` matches far more than ``?``), and deciding it exactly on
automata is exponential in the worst case (16 ``?`` after ``**a`` took 16 s). So
:func:`within` is **sound and polynomial**: it answers True only when containment holds,
by comparing the patterns segment by segment (a dynamic program over the two lists of
segments, each pair of segments compared in time linear in their product), and it may
refuse an exotic pattern that is in fact within (then list it more plainly).

The dialect, as path globs usually are (gitignore, Claude's permission rules):

- a ``**`` segment matches zero or more whole segments (``/srv/**`` is ``/srv`` and
  everything beneath it; ``/a/**/b`` matches ``/a/b`` and ``/a/x/y/b``);
- ``*`` matches any string without ``/`` (so does ``**`` inside a longer segment);
- ``?`` matches one character other than ``/``;
- ``[abc]``, ``[a-z]``, ``[!a-z]`` (or ``[^a-z]``) match one character other than ``/``;
  a ``[`` without its ``]`` is a literal;
- anything else matches itself.

Normalizing collapses ``//`` and removes ``.`` segments; a ``..`` segment is refused, as
``/srv/../etc/**`` is ``/etc/**`` in disguise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

#: The most segment-by-character work one containment check may cost: beyond it the
#: check refuses (a spec this large is not a permission list a person wrote).
WORK_LIMIT: Final = 2**21

_GLOB_CHARS: Final = frozenset("*?[")


class BadPattern(ValueError):
    """A pattern that cannot be a permission (a ``..`` segment)."""


class TooLarge(ValueError):
    """Patterns too large to compare within :data:`WORK_LIMIT`."""


def normalize(pattern: str) -> str:
    """*pattern* with ``//`` collapsed and ``.`` segments removed; ``..`` is refused."""
    absolute = pattern.startswith("/")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadPattern(f"{pattern!r}: '..' segments are not allowed in a permission")
    body = "/".join(parts)
    if pattern.endswith("/") and body:
        body += "/"
    return ("/" + body) if absolute else (body or ".")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "lit" | "one" | "star" | "set"
    char: str = ""  # for "lit"
    ranges: tuple[tuple[str, str], ...] = ()  # for "set": inclusive ranges
    negated: bool = False

    def accepts(self, c: str) -> bool:
        if self.kind == "lit":
            return c == self.char
        if self.kind == "set":
            return any(lo <= c <= hi for lo, hi in self.ranges) != self.negated
        return True  # "one" (segments never hold "/")


@lru_cache(maxsize=4096)
def _segment(text: str) -> tuple[_Tok, ...]:
    """One segment as tokens; any run of ``*`` is one ``star``."""
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            while i < n and text[i] == "*":
                i += 1
            toks.append(_Tok("star"))
            continue
        if ch == "?":
            toks.append(_Tok("one"))
        elif ch == "[" and (parsed := _parse_set(text, i)) is not None:
            tok, i = parsed
            toks.append(tok)
            continue
        else:
            toks.append(_Tok("lit", ch))
        i += 1
    return tuple(toks)


def _parse_set(text: str, start: int) -> tuple[_Tok, int] | None:
    i = start + 1
    negated = i < len(text) and text[i] in "!^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    first = True
    while i < len(text):
        ch = text[i]
        if ch == "]" and not first:
            return _Tok("set", ranges=tuple(ranges), negated=negated), i + 1
        if i + 2 < len(text) and text[i + 1] == "-" and text[i + 2] != "]":
            if ch <= text[i + 2]:
                ranges.append((ch, text[i + 2]))
            i += 3
        else:
            ranges.append((ch, ch))
            i += 1
        first = False
    return None


def _segment_matches(pattern: str, name: str) -> bool:
    """True if the one-segment glob *pattern* matches the literal *name*: O(n·m)."""
    toks = _segment(pattern)
    # reach[j]: the first j tokens can match the name's prefix read so far.
    reach = [False] * (len(toks) + 1)
    reach[0] = True
    for j, tok in enumerate(toks):
        if tok.kind == "star" and reach[j]:
            reach[j + 1] = True
    for c in name:
        nxt = [False] * (len(toks) + 1)
        for j, tok in enumerate(toks):
            if not reach[j]:
                continue
            if tok.kind == "star":
                nxt[j] = True  # the star takes c and stays
            elif tok.accepts(c):
                nxt[j + 1] = True
        for j, tok in enumerate(toks):  # a star may also take nothing
            if tok.kind == "star" and nxt[j]:
                nxt[j + 1] = True
        reach = nxt
        if not any(reach):
            return False
    return reach[-1]


def _is_literal(segment: str) -> bool:
    return not any(ch in _GLOB_CHARS for ch in segment)


def _segment_within(child: str, parent: str) -> bool:
    """Sound: every name the child segment matches, the parent segment matches."""
    if child == parent:
        return True
    if all(t.kind == "star" for t in _segment(parent)) and parent:
        return True  # "*": any one segment
    if _is_literal(child):
        return _segment_matches(parent, child)
    # Token by token, aligned: each of the child's within the parent's (a star only
    # within a star). Sound; patterns of other shapes are refused.
    mine, theirs = _segment(child), _segment(parent)
    return len(mine) == len(theirs) and all(map(_token_within, mine, theirs))


def _token_within(child: _Tok, parent: _Tok) -> bool:
    if parent.kind == "star":
        return True
    if child.kind == "star":
        return False
    if parent.kind == "one":
        return True  # any one character (never "/" in a segment)
    if child.kind == "lit":
        return parent.accepts(child.char)
    if child.kind == "one" or parent.kind == "lit":
        return False
    # two sets: every character the child's accepts, the parent's does
    if child.negated:
        # the child accepts all but its ranges: the parent must exclude no more than that
        return parent.negated and all(_inside(r, child.ranges) for r in parent.ranges)
    if parent.negated:
        return not any(_overlap(r, x) for r in child.ranges for x in parent.ranges)
    return all(_inside(r, parent.ranges) for r in child.ranges)


def _overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _inside(r: tuple[str, str], ranges: tuple[tuple[str, str], ...]) -> bool:
    """Is the range *r* covered by the union of *ranges*? (Sorted sweep.)"""
    lo, hi = r
    for a, b in sorted(ranges):
        if a > lo:
            return False
        if b >= lo:
            if b >= hi:
                return True
            lo = chr(ord(b) + 1)
    return False


def _segments(pattern: str) -> tuple[bool, list[str]]:
    normal = normalize(pattern)
    return normal.startswith("/"), [s for s in normal.split("/") if s not in ("", ".")]


def _cover(child: list[str], parent: list[str], *, literal: bool) -> bool:
    """Dynamic program: ``child[i:]`` within ``parent[j:]`` for all i, j (O(|c|·|p|))."""
    n, m = len(child), len(parent)
    # ok[i][j] for the suffixes; filled from the ends.
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n, -1, -1):
        for j in range(m - 1, -1, -1):
            if parent[j] == "**":
                # zero segments, or the child's next segment (any, "**" included) absorbed
                ok[i][j] = ok[i][j + 1] or (i < n and ok[i + 1][j])
            elif i < n and (literal or child[i] != "**"):
                same = (
                    _segment_matches(parent[j], child[i])
                    if literal
                    else _segment_within(child[i], parent[j])
                )
                ok[i][j] = same and ok[i + 1][j + 1]
    return ok[0][0]


def matches(pattern: str, path: str) -> bool:
    """True if the literal *path* is matched by *pattern* (the dialect above)."""
    pa, psegs = _segments(pattern)
    ta, tsegs = _segments(path) if ".." not in path.split("/") else (not pa, [])
    return pa == ta and _cover(tsegs, psegs, literal=True)


def within(child: str, parents: Sequence[str]) -> bool:
    """True only if every path *child* matches is matched by one of *parents*.

    Sound and polynomial (see the module's docstring). Raises :class:`BadPattern` for a
    ``..`` segment, :class:`TooLarge` past :data:`WORK_LIMIT`.
    """
    ca, csegs = _segments(child)
    work = len(child) * sum(len(p) for p in parents)
    if work > WORK_LIMIT:
        raise TooLarge(f"{child!r}: too large to compare with {len(parents)} patterns")
    for parent in parents:
        pa, psegs = _segments(parent)
        if ca == pa and _cover(csegs, psegs, literal=False):
            return True
    return False
