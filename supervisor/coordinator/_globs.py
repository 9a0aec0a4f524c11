"""Path globs as languages: normalizing, matching, and deciding containment exactly.

Permission containment (issue 10, item 9) is a question about *sets of paths*: a child's
pattern is within its parent's only if every path the child's matches, the parent's
matches too. Comparing the patterns as strings (``fnmatch(child, parent)``) gets this
wrong both ways: ``/data/*`` "matches" ``/data/?`` as text, yet ``*`` matches far more
than ``?``. So each pattern is read as a small automaton and inclusion is decided on the
automata (a product of subset constructions over a finite partition of the alphabet).

The dialect, as path globs usually are (gitignore, Claude's permission rules):

- ``**`` matches any string, ``/`` included;
- ``*`` matches any string without ``/``;
- ``?`` matches one character other than ``/``;
- ``[abc]``, ``[a-z]``, ``[!a-z]`` (or ``[^a-z]``) match one character other than ``/``;
  a ``[`` without its ``]`` is a literal;
- anything else matches itself.

Normalizing collapses ``//`` and removes ``.`` segments; a ``..`` segment is refused, as
``/srv/../etc/**`` is ``/etc/**`` in disguise.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

_SLASH: Final = ord("/")
_MAX_CHAR: Final = 0x110000


class BadPattern(ValueError):
    """A pattern that cannot be a permission (a ``..`` segment)."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "lit" | "one" | "star" | "globstar" | "set"
    char: int = 0  # for "lit"
    ranges: tuple[tuple[int, int], ...] = ()  # for "set": inclusive ranges
    negated: bool = False

    def accepts(self, c: int) -> bool:
        if self.kind == "lit":
            return c == self.char
        if self.kind == "globstar":
            return True
        if c == _SLASH:
            return False
        if self.kind == "set":
            inside = any(lo <= c <= hi for lo, hi in self.ranges)
            return inside != self.negated
        return True  # "one", "star"

    @property
    def loops(self) -> bool:
        return self.kind in ("star", "globstar")


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


@lru_cache(maxsize=1024)
def _tokens(pattern: str) -> tuple[_Tok, ...]:
    toks: list[_Tok] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            kind = "globstar" if j - i >= 2 else "star"
            if toks and toks[-1].kind == "globstar":
                pass  # "**" absorbs any stars after it
            elif toks and toks[-1].kind == "star" and kind == "globstar":
                toks[-1] = _Tok("globstar")
            elif not (toks and toks[-1].kind == "star" and kind == "star"):
                toks.append(_Tok(kind))
            i = j
        elif ch == "?":
            toks.append(_Tok("one"))
            i += 1
        elif ch == "[":
            parsed = _parse_set(pattern, i)
            if parsed is None:
                toks.append(_Tok("lit", ord("[")))
                i += 1
            else:
                tok, i = parsed
                toks.append(tok)
        else:
            toks.append(_Tok("lit", ord(ch)))
            i += 1
    return tuple(toks)


def _parse_set(pattern: str, start: int) -> tuple[_Tok, int] | None:
    i = start + 1
    negated = i < len(pattern) and pattern[i] in "!^"
    if negated:
        i += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            return _Tok("set", ranges=tuple(ranges), negated=negated), i + 1
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            lo, hi = ord(ch), ord(pattern[i + 2])
            if lo <= hi:
                ranges.append((lo, hi))
            i += 3
        else:
            ranges.append((ord(ch), ord(ch)))
            i += 1
        first = False
    return None


def _regex_of(toks: tuple[_Tok, ...]) -> str:
    out = []
    for tok in toks:
        if tok.kind == "lit":
            out.append(re.escape(chr(tok.char)))
        elif tok.kind == "one":
            out.append("[^/]")
        elif tok.kind == "star":
            out.append("[^/]*")
        elif tok.kind == "globstar":
            out.append(".*")
        else:
            body = "".join(
                re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                for lo, hi in tok.ranges
            )
            if tok.negated:
                out.append(f"[^/{body}]")
            else:
                out.append(f"(?!/)[{body}]" if body else "(?!)")
    return "".join(out)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_regex_of(_tokens(pattern)), re.DOTALL)


def matches(pattern: str, path: str) -> bool:
    """True if *path* is matched by *pattern* (the dialect above, the whole path)."""
    return _compiled(pattern).fullmatch(path) is not None


def _closure(toks: tuple[_Tok, ...], states: frozenset[int]) -> frozenset[int]:
    # A star may match nothing: from before it, we are also after it.
    out = set(states)
    stack = list(states)
    while stack:
        s = stack.pop()
        if s < len(toks) and toks[s].loops and s + 1 not in out:
            out.add(s + 1)
            stack.append(s + 1)
    return frozenset(out)


def _step(toks: tuple[_Tok, ...], states: frozenset[int], c: int) -> frozenset[int]:
    nxt = set()
    for s in states:
        if s < len(toks) and toks[s].accepts(c):
            nxt.add(s if toks[s].loops else s + 1)
    return _closure(toks, frozenset(nxt))


def _alphabet(*patterns: tuple[_Tok, ...]) -> list[int]:
    """One representative character per class of characters no token tells apart."""
    cuts = {0, _SLASH, _SLASH + 1}
    for toks in patterns:
        for tok in toks:
            if tok.kind == "lit":
                cuts |= {tok.char, tok.char + 1}
            for lo, hi in tok.ranges:
                cuts |= {lo, hi + 1}
    return sorted(c for c in cuts if c < _MAX_CHAR)


def counterexample(child: str, parents: Sequence[str]) -> str | None:
    """A path *child* matches and none of *parents* does, or None if there is none.

    Exact: breadth-first over the product of the subset constructions, so the first
    witness found is a shortest one. The parents count as a union: ``/a/*`` is within
    ``["/a/[!x]*", "/a/x*"]`` though within neither alone.
    """
    a = _tokens(child)
    bs = [_tokens(p) for p in parents]
    alphabet = _alphabet(a, *bs)
    start = (
        _closure(a, frozenset({0})),
        tuple(_closure(b, frozenset({0})) for b in bs),
    )
    seen = {start}
    queue: deque[tuple[tuple[frozenset[int], tuple[frozenset[int], ...]], str]] = deque(
        [(start, "")]
    )
    while queue:
        (sa, sbs), path = queue.popleft()
        if len(a) in sa and not any(len(b) in sb for b, sb in zip(bs, sbs, strict=True)):
            return path
        for c in alphabet:
            na = _step(a, sa, c)
            if not na:
                continue
            pair = (na, tuple(_step(b, sb, c) for b, sb in zip(bs, sbs, strict=True)))
            if pair not in seen:
                seen.add(pair)
                queue.append((pair, path + chr(c)))
    return None


def within(child: str, parents: Sequence[str]) -> bool:
    """True if every path *child* matches is matched by one of *parents* (normalized).

    Raises :class:`BadPattern` for a ``..`` segment in any of them.
    """
    return counterexample(normalize(child), [normalize(p) for p in parents]) is None
