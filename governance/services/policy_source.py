"""Reading policy text fast: the plain data in one cheap pass, each finding's line and column on demand.

The linter's complete reader (``policy_lint._read_nodes``) composes PyYAML's node graph and records the position
of every node; on a 1,000-rule policy that alone costs several times the whole lint budget. Most policies are
written in a small, regular part of YAML (block mappings and sequences of plain or quoted scalars) or are JSON,
and for those two readers here give the same data at a fraction of the cost:

* :func:`read_json` uses ``json.loads`` (C) for the data and a :class:`JsonPositions` that finds the offset of
  a path in the text only when a finding asks for it (walking just the containers on that path, cached).
* :func:`read_block_yaml` reads block-style YAML line by line, resolving plain scalars with PyYAML's own
  resolver, and records each node's line and column as one int in a per-container list.

Both answer ``None`` for anything outside what they reproduce exactly (flow collections other than ``[]`` and
``{}``, anchors and aliases, tags, block scalars, escapes in double quotes, duplicate or non-string keys,
special numbers, over-deep or oversized documents, unusual characters …); the caller then falls back to the
complete reader, which also produces the findings for those cases. Positions are 1-based (line, column) in
code points, as libyaml reports them. ``tests/governance/test_policy_source.py`` holds both readers to the
complete reader's data and positions.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import Any, Protocol

import yaml

Path_ = tuple[str | int, ...]
Position = tuple[int | None, int | None]

__all__ = ["MappedPositions", "Positions", "SourceRead", "read_block_yaml", "read_json"]


class Positions(Protocol):
    def locate(self, path: Path_, *, key: bool = False) -> Position:
        """The (line, column) of the value at ``path`` or, when ``key`` and ``path`` ends in a mapping key, of
        that key; a path that does not exist falls back to its longest existing prefix."""
        ...


@dataclass(frozen=True)
class SourceRead:
    data: Any
    positions: Positions


class MappedPositions:
    """Positions recorded up front for every node (the complete reader), or none at all (a parsed document)."""

    def __init__(
        self,
        values: dict[Path_, tuple[int, int]] | None = None,
        keys: dict[Path_, tuple[int, int]] | None = None,
    ):
        self.values = values if values is not None else {}
        self.keys = keys if keys is not None else {}

    def locate(self, path: Path_, *, key: bool = False) -> Position:
        if key and path in self.keys:
            return self.keys[path]
        probe = path
        while probe not in self.values and probe:
            probe = probe[:-1]
        return self.values.get(probe, (None, None))


# --- characters both fast readers refuse ------------------------------------------------------------------
# Outside YAML's printable set (libyaml rejects them), line breaks other than \n and \r\n (YAML counts NEL, LS
# and PS as breaks, JSON and Python lines do not), tabs (YAML rejects them in indentation) and the BOM.
_ASCII_UNUSUAL = tuple(chr(code) for code in (*range(10), 11, 12, *range(14, 32), 127))
_NON_ASCII = re.compile("[^\x00-\x7f]+")
_UNUSUAL = re.compile("[^\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _plain_text(text: str) -> str | None:
    """``text`` with CRLF line ends made LF (lines and columns stay the same), or None if it holds a character
    the fast readers do not handle."""
    if any(character in text for character in _ASCII_UNUSUAL):
        return None
    if not text.isascii() and _UNUSUAL.search("".join(_NON_ASCII.findall(text))):
        return None
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):
            return None
        return text.replace("\r\n", "\n")
    return text


# --- JSON ---------------------------------------------------------------------------------------------------
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_INNERMOST = re.compile(rb"\[\]|\{\}")
# Everything but what delimits strings and values: what is left of a text is its structure.
_NOT_STRUCTURE = bytes(code for code in range(256) if chr(code) not in '[]{}",:')
_NOT_BRACKET = b",:"
# YAML 1.1 reads a number with an exponent as a float only with a dot and a signed exponent (1.0e+5); 1e5 or
# 1.0e5 would be strings there, so JSON texts holding them go to the complete reader.
_YAML_FLOAT = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
# libyaml wants a simple key's ':' on the key's line, within 1,024 characters of its start.
_COLON_STARTS_LINE = re.compile(r"\n[ \n]*:")
_FAR_COLON = " " * 100 + ":"
_MAX_KEY_LENGTH = 150  # decoded; at most 6 characters each as written (\uXXXX)


def read_json(text: str, *, max_nodes: int, max_depth: int, strict: bool) -> SourceRead | None:
    """JSON text → data (``json.loads``) and lazy positions, or None when only the complete reader gives the
    linter's exact answer. ``strict``: ``json.loads`` errors propagate (``JSONDecodeError``, ``ValueError`` for
    NaN/Infinity, ``RecursionError``), otherwise they answer None."""
    unlike_yaml: list[bool] = []
    objects: list[dict[str, Any]] = []

    def mapping(value: dict[str, Any]) -> dict[str, Any]:
        objects.append(value)
        return value

    def number(literal: str) -> float:
        value = float(literal)
        if not _YAML_FLOAT.fullmatch(literal) or not math.isfinite(value):
            unlike_yaml.append(True)  # 1.0e+400 overflows: the complete reader reports it
        return value

    try:
        data = json.loads(text, object_hook=mapping, parse_float=number, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        if strict:
            raise
        return None
    if unlike_yaml or max(map(len, set(chain.from_iterable(objects))), default=0) > _MAX_KEY_LENGTH:
        return None
    plain = _plain_text(text)
    if plain is None or _COLON_STARTS_LINE.search(plain) or _FAR_COLON in plain:
        return None
    if "\\" in plain:
        if _SURROGATE_ESCAPE.search(plain):
            return None  # YAML keeps an escaped surrogate pair as two code points, JSON joins them
        unescaped = plain.replace("\\\\", "").replace('\\"', "")
    else:
        unescaped = plain
    structure = b"".join(unescaped.encode().translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    # Outside strings, each key has one ':'; fewer keys in the objects means a key was repeated (json.loads
    # keeps the last silently, the complete reader reports it).
    if structure.count(b":") != sum(map(len, objects)):
        return None
    # Every value but the root follows a '[', ',' or ':': a bound on the node count.
    if 1 + structure.count(b"[") + structure.count(b",") + structure.count(b":") > max_nodes:
        return None
    if _nesting(structure.translate(None, _NOT_BRACKET)) > max_depth:
        return None
    return SourceRead(data, JsonPositions(plain, data))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _nesting(brackets: bytes) -> int:
    """How deep ``[]{}`` nest (each pass removes the innermost pairs: one pass per level)."""
    depth = 0
    while brackets:
        reduced = _INNERMOST.sub(b"", brackets)
        if len(reduced) == len(brackets):
            return 1 << 30  # unbalanced: cannot happen for text json.loads accepted
        brackets, depth = reduced, depth + 1
    return depth


class _Lines:
    """Offset → 1-based (line, column). The first lookups count newlines directly (a report usually needs a
    few); after that a line index pays off and is built once."""

    _DIRECT_LOOKUPS = 32

    def __init__(self, text: str):
        self.text = text
        self._lookups = 0
        self._ends: list[int] | None = None  # offset just past each line's newline

    def position(self, offset: int) -> tuple[int, int]:
        if self._ends is None:
            self._lookups += 1
            if self._lookups <= self._DIRECT_LOOKUPS:
                return self.text.count("\n", 0, offset) + 1, offset - self.text.rfind("\n", 0, offset)
            self._ends = list(accumulate(map((1).__add__, map(len, self.text.split("\n")))))
        line = bisect_right(self._ends, offset)
        return line + 1, offset - (self._ends[line - 1] if line else 0) + 1


class JsonPositions:
    """Finds a path in JSON text on demand. Each container on the way is scanned once, and only as far as the
    child asked for (earlier siblings are skipped with the C scanner); the offsets found are kept."""

    def __init__(self, text: str, data: Any):
        self.text = text
        self.data = data
        self.lines = _Lines(text)
        self.root = _WHITESPACE.match(text).end()
        self._scan_once = json.JSONDecoder().scan_once
        # id(container) → (key and value offsets of the children found so far, where its last value starts)
        self._children: dict[int, list[tuple[int | None, int]]] = {}

    def locate(self, path: Path_, *, key: bool = False) -> Position:
        container, offset, key_offset = self.data, self.root, None
        for depth, part in enumerate(path):
            found = self._child(container, offset, part)
            if found is None:
                break
            child_key, offset = found
            container = container[part]
            if depth == len(path) - 1:
                key_offset = child_key
        else:
            if key and key_offset is not None:
                return self.lines.position(key_offset)
        return self.lines.position(offset)

    def _child(self, container: Any, offset: int, part: str | int) -> tuple[int | None, int] | None:
        if isinstance(container, dict):
            if not isinstance(part, str) or part not in container:
                return None
            wanted = list(container).index(part)
        elif isinstance(container, list):
            if not isinstance(part, int) or not 0 <= part < len(container):
                return None
            wanted = part
        else:
            return None
        found = self._children.setdefault(id(container), [])
        text, skip = self.text, _WHITESPACE.match
        while len(found) <= wanted:
            if found:  # past the previous child's value and its ','
                _, after = self._scan_once(text, found[-1][1])
                position = skip(text, skip(text, after).end() + 1).end()
            else:  # past the '[' or '{'
                position = skip(text, offset + 1).end()
            key_offset = None
            if isinstance(container, dict):
                key_offset = position
                _, after_key = json.decoder.scanstring(text, position + 1)
                position = skip(text, skip(text, after_key).end() + 1).end()  # past the ':'
            found.append((key_offset, position))
        return found[wanted]


# --- block YAML -----------------------------------------------------------------------------------------------
# One line: indentation, "-" and its spaces, a plain key, ":" and its spaces, the rest (value or comment).
_LINE = re.compile(
    r"( *)(?:(-)( +|(?=\n)))?"
    r"""(?:([A-Za-z_][A-Za-z0-9_./-]*|'(?:[^'\n]|'')*'|"[^"\\\n]*")(:(?: +|(?=\n))))?"""
    r"(.*)\n"
)
_MAX_KEY_LENGTH_YAML = 1_000  # libyaml wants a simple key's ':' within 1,024 characters of its start
_INDICATORS = frozenset(",[]{}#&*!|>%@`")
_CONTINUATION_INDICATORS = frozenset(",[]{}#&*!|>%@`-?:'\"")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_RESOLVER = yaml.resolver.Resolver()  # the resolver CSafeLoader uses: the same implicit types
_STR, _INT, _FLOAT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
_BOOL_VALUES = yaml.constructor.SafeConstructor.bool_values
_LINE_SHIFT = 20  # a position is line << 20 | column: a 1 MB document has no longer line
_MISSING = object()


class _Unsupported(Exception):
    """The text leaves the subset this reader reproduces exactly."""


def _plain_scalar(text: str) -> Any:
    """A plain scalar as PyYAML's SafeLoader constructs it (only the types it constructs identically here)."""
    if ": " in text or text.endswith(":"):
        raise _Unsupported  # a mapping where a scalar was expected
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    if tag == _STR:
        return text
    if tag == _INT and _DECIMAL.fullmatch(text):
        return int(text)
    if tag == _FLOAT and "_" not in text and ":" not in text and not text.lstrip("+-").startswith("."):
        value = float(text)
        if math.isfinite(value):  # 1.0e+400 overflows: the complete reader reports it
            return value
    if tag == _BOOL:
        return _BOOL_VALUES[text.lower()]
    if tag == _NULL and text:
        return None
    raise _Unsupported  # timestamps, octal/hex/sexagesimal ints, .inf/.nan, merge keys, empty values …


def _key_name(written: str) -> str:
    """The string a mapping key is; anything else (``yes``, ``null``, ``1`` unquoted) is not supported."""
    if len(written) > _MAX_KEY_LENGTH_YAML:
        raise _Unsupported
    if written[0] == "'":
        return written[1:-1].replace("''", "'")
    if written[0] == '"':
        return written[1:-1]
    if _RESOLVER.resolve(yaml.ScalarNode, written, (True, False)) != _STR:
        raise _Unsupported  # the complete reader reports a key that is not a string
    return written


def _after_quote(rest: str, end: int) -> None:
    tail = rest[end + 1 :]
    if tail.strip(" ") and not (tail[0] == " " and tail.lstrip(" ").startswith("#")):
        raise _Unsupported


def _closing_quote(text: str, quote: str, start: int) -> int:
    """Where the quoted scalar in ``text`` ends (-1: not on this line); '' is an escaped ' in single quotes."""
    end = text.find(quote, start)
    if quote == "'":
        while end != -1 and text.startswith("'", end + 1):
            end = text.find("'", end + 2)
    return end


class _Continues(Exception):
    """A quoted scalar goes on over the following lines."""


class _EmptyCollection:
    """``[]`` or ``{}`` as a value: a new container each time it occurs."""

    def __init__(self, make: type):
        self.make = make


_EMPTY_LIST, _EMPTY_DICT = _EmptyCollection(list), _EmptyCollection(dict)


def _scalar(rest: str) -> Any:
    """The value of a one-line scalar (with any trailing comment)."""
    first = rest[0]
    if first in "'\"":
        if first == '"' and "\\" in rest:
            raise _Unsupported  # escapes
        end = _closing_quote(rest, first, 1)
        if end == -1:
            raise _Continues
        _after_quote(rest, end)
        return rest[1:end].replace("''", "'") if first == "'" else rest[1:end]
    if first in "[{":
        comment = rest.find(" #")
        flow = (rest if comment == -1 else rest[:comment]).rstrip(" ")
        if flow in ("[]", "{}"):
            return _EMPTY_LIST if flow == "[]" else _EMPTY_DICT
        raise _Unsupported  # a flow collection
    if first in _INDICATORS or (first in "-?:" and rest[1:2] in ("", " ")):
        raise _Unsupported
    comment = rest.find(" #")
    return _plain_scalar((rest if comment == -1 else rest[:comment]).rstrip(" "))


def _quoted_lines(rest: str, rows: Iterator[tuple[str, ...]], block_column: int) -> tuple[str, int]:
    """A quoted scalar that starts in ``rest`` and goes on over the next rows, folded as YAML folds it: a line
    break is a space, each empty line a newline, spaces around breaks dropped. Returns it and the rows read."""
    quote = rest[0]
    pieces = [rest[1:].rstrip(" ")]
    empty_lines = 0
    for count, row in enumerate(rows, 1):
        text = "".join(row[:-1]) if row[-1] == "\n" else "".join(row)
        content = text.lstrip(" ")
        if not content.strip(" "):
            empty_lines += 1
            continue
        if len(text) - len(content) <= block_column or (quote == '"' and "\\" in content):
            raise _Unsupported
        pieces.append("\n" * empty_lines if empty_lines else " ")
        empty_lines = 0
        end = _closing_quote(content, quote, 0)
        if end == -1:
            pieces.append(content.rstrip(" "))
            continue
        _after_quote(content, end)
        pieces.append(content[:end])
        value = "".join(pieces)
        return (value.replace("''", "'") if quote == "'" else value), count
    raise _Unsupported  # the text ends inside the quotes


def read_block_yaml(text: str, *, max_nodes: int, max_depth: int) -> SourceRead | None:
    """Block-style YAML (mappings and sequences of plain or quoted scalars without escapes, ``[]``, ``{}``,
    comments, one leading ``---``) → the data CSafeLoader gives and every node's position; None for anything
    else."""
    plain = _plain_text(text)
    if plain is None:
        return None
    try:
        return _read_block_yaml(plain if plain.endswith("\n") else plain + "\n", max_nodes, max_depth)
    except _Unsupported:
        return None


def _read_block_yaml(text: str, max_nodes: int, max_depth: int) -> SourceRead:
    spans: dict[int, list[int]] = {}  # id(container) → positions of its children ((key, value) pairs for dicts)
    frames: list[tuple[int, Any, list[int], bool]] = []  # open containers: (column, container, spans, is a list)
    scalars: dict[str, Any] = {}  # the rest of a line → its value (most values repeat)
    key_names: dict[str, str] = {}  # a key as written → the string it is
    root: Any = None
    root_position = 0
    pending: tuple[dict, str, int, list[int], int] | None = None  # a "key:" whose value starts on a later line
    # The last scalar value, which more-indented lines continue if it is plain: where it is, its text, the
    # column of its block; and how many empty lines followed it.
    last_container: Any = None
    last_slot: str | int = 0
    last_text = ""
    last_column = 0
    empty_lines = 0
    nodes = 1
    deepest = max_depth - 2
    shift = _LINE_SHIFT
    marker_allowed = True
    line = 0
    # The mapping the last line wrote a key to, while it is the innermost open container: most lines are
    # another "key: value" of it, taken here without the general steps below (same result).
    mapping_column, mapping, mapping_spans = -1, {}, []
    rows = iter(_LINE.findall(text))
    for indentation, dash, dash_spaces, key, colon, rest in rows:
        line += 1
        if key and not dash and len(indentation) == mapping_column and rest and rest[0] != "#":
            name = key_names.get(key)
            value = scalars.get(rest, _MISSING)
            if name is not None and value is not _MISSING and type(value) is not _EmptyCollection:
                if name in mapping:
                    raise _Unsupported  # a duplicate key: the complete reader reports it
                mapping[name] = value
                mapping_spans += (
                    line << shift | (mapping_column + 1),
                    line << shift | (mapping_column + len(key) + len(colon) + 1),
                )
                nodes += 1
                empty_lines = 0
                last_container, last_slot, last_text, last_column = mapping, name, rest, mapping_column
                continue
        if not dash and not key:
            if not rest:
                empty_lines += 1
            elif rest[0] == "#":
                last_container = None  # a comment ends a plain scalar
            elif last_container is not None and len(indentation) > last_column:
                last_text = _continue_plain(last_text, rest, empty_lines)
                last_container[last_slot] = _plain_scalar(last_text)
                empty_lines = 0
            elif not indentation and marker_allowed and root is None and rest.rstrip(" ") == "---":
                marker_allowed = False
            else:
                raise _Unsupported  # a root scalar, a flow collection, "...", a directive …
            continue
        marker_allowed = False
        column = len(indentation)
        if root is None:
            root = [] if dash else {}
            root_position = line << shift | (column + 1)
            spans[id(root)] = root_spans = []
            frames.append((column, root, root_spans, bool(dash)))
        elif pending is not None:
            parent, parent_key, key_position, parent_spans, parent_column = pending
            pending = None
            if dash and column >= parent_column:  # a sequence, indented or not
                child: Any = []
            elif not dash and column > parent_column:
                child = {}
            else:
                raise _Unsupported  # an empty value (null)
            parent[parent_key] = child
            parent_spans += (key_position, line << shift | (column + 1))
            spans[id(child)] = child_spans = []
            frames.append((column, child, child_spans, bool(dash)))
            if len(frames) > deepest:
                raise _Unsupported
        else:
            while frames[-1][0] > column:
                frames.pop()
                if not frames:
                    raise _Unsupported
            if not dash and frames[-1][3] and frames[-1][0] == column:
                frames.pop()  # a key after an indentless sequence: back to its mapping
                if not frames:
                    raise _Unsupported
        block_column, container, container_spans, is_list = frames[-1]
        if block_column != column or is_list != bool(dash):
            raise _Unsupported
        nodes += 1
        empty_lines = 0
        if dash:
            column += 1 + len(dash_spaces)
            if key:
                item: dict[str, Any] = {}
                container.append(item)
                container_spans.append(line << shift | (column + 1))
                spans[id(item)] = container_spans = []
                frames.append((column, item, container_spans, False))
                if len(frames) > deepest:
                    raise _Unsupported
                block_column, container = column, item
                nodes += 1
            else:
                if not rest or rest[0] == "#":
                    raise _Unsupported  # an item on the following lines, or null
                slot: str | int = len(container)
                container.append(None)
                container_spans.append(line << shift | (column + 1))
        if key:
            name = key_names.get(key)
            if name is None:
                name = key_names[key] = _key_name(key)
            if name in container:
                raise _Unsupported  # a duplicate key: the complete reader reports it
            if not rest or rest[0] == "#":
                container[name] = None  # keeps the key's place; the next line brings the value
                pending = (container, name, line << shift | (column + 1), container_spans, column)
                last_container = None
                mapping_column = -1
                continue
            container_spans += (line << shift | (column + 1), line << shift | (column + len(key) + len(colon) + 1))
            slot = name
        value = scalars.get(rest, _MISSING)
        if value is _MISSING:
            try:
                value = scalars[rest] = _scalar(rest)
            except _Continues:
                value, read = _quoted_lines(rest, rows, block_column)
                line += read
        if type(value) is _EmptyCollection:
            value = value.make()
            spans[id(value)] = []
        container[slot] = value
        last_container, last_slot, last_text, last_column = container, slot, rest, block_column
        if key:
            mapping_column, mapping, mapping_spans = block_column, container, container_spans
        else:
            mapping_column = -1
    if pending is not None or root is None or nodes > max_nodes:
        raise _Unsupported
    return SourceRead(root, BlockYamlPositions(root, root_position, spans))


def _continue_plain(text: str, rest: str, empty_lines: int) -> str:
    """A plain scalar ``text`` continued by the line ``rest`` after ``empty_lines`` empty lines (folded: one
    break is a space, each empty line a newline). Anything but a plain scalar cannot continue."""
    if text[0] in _CONTINUATION_INDICATORS or " #" in text or rest[0] in _CONTINUATION_INDICATORS:
        raise _Unsupported
    comment = rest.find(" #")
    if comment != -1:
        raise _Unsupported  # a comment ends the scalar; what follows it would be an error
    return text.rstrip(" ") + ("\n" * empty_lines if empty_lines else " ") + rest.rstrip(" ")


class BlockYamlPositions:
    """Positions recorded by :func:`read_block_yaml`, looked up along the path through the data."""

    def __init__(self, data: Any, root: int, spans: dict[int, list[int]]):
        self.data = data
        self.root = root
        self.spans = spans

    def locate(self, path: Path_, *, key: bool = False) -> Position:
        container, position, key_position = self.data, self.root, None
        for depth, part in enumerate(path):
            if isinstance(container, dict) and isinstance(part, str) and part in container:
                index = list(container).index(part)
                pair = self.spans[id(container)][2 * index : 2 * index + 2]
                if depth == len(path) - 1:
                    key_position = pair[0]
                position = pair[1]
            elif isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
                position = self.spans[id(container)][part]
            else:
                break
            container = container[part]
        else:
            if key and key_position is not None:
                return _decode(key_position)
        return _decode(position)


def _decode(position: int) -> tuple[int, int]:
    return position >> _LINE_SHIFT, position & ((1 << _LINE_SHIFT) - 1)
