"""Branching case files: the parsed form of a case, and reading it from YAML with line numbers.

`parse_case` checks everything a single field can get wrong (types, unknown keys, lengths,
ids, allowed values). Checks that need the whole graph live in `quizzes.validator`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import yaml
from yaml.constructor import SafeConstructor

MAX_FILE_BYTES: Final = 256 * 1024
MAX_NODES: Final = 60
MIN_CHOICES: Final = 2
MAX_CHOICES: Final = 4
MAX_KNOWN_ITEMS: Final = 8
MAX_SCORE: Final = 1000
MAX_VERSION: Final = 1_000_000
MAX_ATTEMPTS: Final = 1000
MAX_ID_CHARS: Final = 64
MAX_TITLE_CHARS: Final = 120
MAX_SUMMARY_CHARS: Final = 500
MAX_NODE_TEXT_CHARS: Final = 4000
MAX_KNOWN_CHARS: Final = 200
MAX_CHOICE_TEXT_CHARS: Final = 300
MAX_CONSEQUENCE_CHARS: Final = 1500
MAX_PRINCIPLE_CHARS: Final = 200
MAX_DEBRIEF_CHARS: Final = 4000

MODULES: Final = ("recognise", "own", "learn")
OUTCOMES: Final = ("recovered", "contained", "escalated")
ATTEMPT_COUNTS: Final = ("best", "latest")
ID_PATTERN: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class Problem:
    """Something wrong in a case file, with the 1-based line it is on."""

    file: str
    line: int
    message: str
    node_id: str | None = None
    code: str = "invalid-value"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CaseInvalid(Exception):
    """A case file has problems; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class Source:
    """Where a mapping was written: its first line and the line of each of its keys."""

    line: int = 0
    keys: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        """The line of `key`, or of the mapping itself when the key is absent."""
        return self.keys.get(key, self.line)


# Every parsed part keeps its Source for messages; it is left out of comparisons so that
# two cases that read the same are equal wherever they were written.


@dataclass(frozen=True)
class Choice:
    """One thing the learner can do at a situation, and where it leads."""

    id: str
    text: str
    goto: str
    consequence: str
    score: int = 0
    source: Source = field(default_factory=Source, compare=False, repr=False)


@dataclass(frozen=True)
class Ending:
    """How a story ends, and what the learner should take from it."""

    outcome: str
    passes: bool
    principle: str
    debrief: str
    rating: int | None = None
    source: Source = field(default_factory=Source, compare=False, repr=False)


@dataclass(frozen=True)
class Node:
    """A situation (with choices) or an ending (with an `ending`)."""

    id: str
    title: str
    text: str
    choices: tuple[Choice, ...] = ()
    ending: Ending | None = None
    known: tuple[str, ...] = ()
    source: Source = field(default_factory=Source, compare=False, repr=False)

    @property
    def is_ending(self) -> bool:
        """Whether the story stops here."""
        return self.ending is not None

    def choice(self, choice_id: str) -> Choice | None:
        """The choice with this id, if the node has one."""
        return next((choice for choice in self.choices if choice.id == choice_id), None)


@dataclass(frozen=True)
class Navigation:
    """What the learner may do besides choosing."""

    allow_back: bool = True
    allow_restart: bool = True
    max_attempts: int | None = None
    attempt_counts: str = "best"


@dataclass(frozen=True)
class Case:
    """A parsed branching case."""

    id: str
    title: str
    module: str
    version: int
    summary: str
    pass_mark: int
    start: str
    nodes: tuple[Node, ...]
    navigation: Navigation = Navigation()
    source: Source = field(default_factory=Source, compare=False, repr=False)

    @cached_property
    def _by_id(self) -> dict[str, Node]:
        # The first node with an id wins; the validator reports the later ones.
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            by_id.setdefault(node.id, node)
        return by_id

    def node(self, node_id: str) -> Node:
        """The node with this id (KeyError if there is none)."""
        return self._by_id[node_id]

    def has_node(self, node_id: str) -> bool:
        """Whether a node with this id exists."""
        return node_id in self._by_id

    @property
    def graph_nodes(self) -> tuple[Node, ...]:
        """The nodes a `goto` can reach: the first node of each id, in file order."""
        return tuple(self._by_id.values())


def parse_case(text: str, filename: str) -> tuple[Case | None, list[Problem]]:
    """Read a case from YAML text, reporting every field-level problem; never raises.

    The case comes back whenever the YAML holds a mapping, filled in as far as possible
    so that the graph checks can still run; trust it only when there are no problems.
    """
    sink = _Sink(filename)
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:
        sink.add(1, f"the file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}", code="too-large")
        return None, sink.problems
    root = _compose(sink, text)
    if root is None:
        return None, sink.problems
    return _read_case(sink, root), sink.problems


def did_you_mean(word: str, options: Collection[str]) -> str:
    """A ` (did you mean "x"?)` hint for a misspelt name, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


# A list longer than this is not read past this point: YAML aliases can make a small file
# describe a huge one, and anything this long is already reported as over a limit.
_READ_AT_MOST: Final = 50

_CASE_KEYS = ("id", "title", "module", "version", "summary", "pass_mark", "navigation", "start", "nodes")
_NAVIGATION_KEYS = ("allow_back", "allow_restart", "max_attempts", "attempt_counts")
_NODE_KEYS = ("id", "title", "text", "known", "choices", "ending")
_CHOICE_KEYS = ("id", "text", "goto", "score", "consequence")
_ENDING_KEYS = ("outcome", "passes", "rating", "principle", "debrief")

_NULL_TAG: Final = "tag:yaml.org,2002:null"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_STR_TAG: Final = "tag:yaml.org,2002:str"


class _Sink:
    """Collects the problems found in one file."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []

    def add(self, line: int, message: str, *, node_id: str | None = None, code: str = "invalid-value") -> None:
        self.problems.append(Problem(self.filename, line, message, node_id, code))


def _compose(sink: _Sink, text: str) -> yaml.Node | None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        line, message = _yaml_error(error)
        sink.add(line, f"malformed YAML: {message}", code="yaml")
        return None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        code_point = error.character if isinstance(error.character, int) else ord(error.character)
        sink.add(line, f"malformed YAML: the character U+{code_point:04X} is not allowed in YAML", code="yaml")
        return None
    except yaml.YAMLError as error:
        sink.add(1, f"malformed YAML: {error}", code="yaml")
        return None
    except RecursionError:
        sink.add(1, "malformed YAML: the text is nested too deeply", code="yaml")
        return None
    if root is None:
        sink.add(1, "the file is empty", code="missing")
    return root


def _yaml_error(error: yaml.MarkedYAMLError) -> tuple[int, str]:
    """The line and message of a parser error, naming where the broken construct began."""
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark else 1
    problem, context = error.problem or "", error.context or ""
    if not context:
        return line, problem
    if problem.startswith("but "):
        return line, f"{context}, {problem}"
    where = f" on line {error.context_mark.line + 1}" if error.context_mark else ""
    return line, f"{problem} ({context}{where})"


@dataclass
class _Fields:
    """One YAML mapping's allowed fields, and how to report problems in it."""

    sink: _Sink
    label: str  # how messages name the mapping, e.g. 'choice "reply-fast"'; "" at the top
    node_id: str | None
    values: dict[str, yaml.Node]
    source: Source

    def report(self, where: str | int | None, message: str, code: str = "invalid-value") -> None:
        """Report a problem at a key, at a line, or (None) at the mapping itself."""
        line = where if isinstance(where, int) else self.source.line_of(where or "")
        prefix = f"{self.label}: " if self.label else ""
        self.sink.add(line, prefix + message, node_id=self.node_id, code=code)


def _fields(
    sink: _Sink,
    ynode: yaml.Node,
    label: str,
    node_id: str | None,
    allowed: Sequence[str],
    optional: Collection[str] = (),
) -> _Fields | None:
    """The mapping's allowed fields, after reporting duplicate, unknown and missing keys."""
    if not isinstance(ynode, yaml.MappingNode):
        what = label or "the case"
        sink.add(_line(ynode), f"{what} must be a mapping of fields, not {_shown(ynode)}", node_id=node_id)
        return None
    lines: dict[str, int] = {}  # filled in by the loop below
    fields = _Fields(sink, label, node_id, {}, Source(_line(ynode), lines))
    for key_node, value_node in ynode.value:
        line = _line(key_node)
        key = _scalar_text(key_node)
        if key is None:
            fields.report(line, f"field names must be plain words, not {_shown(key_node)}", "unknown-key")
        elif key in lines:
            fields.report(line, f'"{key}" appears twice (first on line {lines[key]})', "duplicate-key")
        elif key == "<<":
            fields.report(line, "merge keys (<<) are not supported; write the fields out", "unknown-key")
        elif key not in allowed:
            lines[key] = line
            fields.report(line, f'unknown key "{key}"{did_you_mean(key, allowed)}', "unknown-key")
        else:
            lines[key] = line
            fields.values[key] = value_node
    for key in allowed:
        if key not in fields.values and key not in optional:
            fields.report(None, f'"{key}" is missing', "missing")
    return fields


def _read_case(sink: _Sink, root: yaml.Node) -> Case | None:
    fields = _fields(sink, root, "", None, _CASE_KEYS, optional={"navigation"})
    if fields is None:
        return None
    return Case(
        id=_ident(fields, "id"),
        title=_text(fields, "title", MAX_TITLE_CHARS),
        module=_one_of(fields, "module", MODULES, default=""),
        version=_whole(fields, "version", 1, MAX_VERSION, default=1),
        summary=_text(fields, "summary", MAX_SUMMARY_CHARS),
        pass_mark=_whole(fields, "pass_mark", 0, 100, default=0),
        start=_text(fields, "start", MAX_ID_CHARS),
        nodes=_read_nodes(fields),
        navigation=_read_navigation(fields),
        source=fields.source,
    )


def _read_navigation(case_fields: _Fields) -> Navigation:
    ynode = case_fields.values.get("navigation")
    if ynode is None or _is_null(ynode):
        return Navigation()
    fields = _fields(case_fields.sink, ynode, "navigation", None, _NAVIGATION_KEYS, optional=_NAVIGATION_KEYS)
    if fields is None:
        return Navigation()
    return Navigation(
        allow_back=_flag(fields, "allow_back", default=True),
        allow_restart=_flag(fields, "allow_restart", default=True),
        max_attempts=_optional_whole(fields, "max_attempts", 1, MAX_ATTEMPTS),
        attempt_counts=_one_of(fields, "attempt_counts", ATTEMPT_COUNTS, default="best"),
    )


def _read_nodes(case_fields: _Fields) -> tuple[Node, ...]:
    items = _list(case_fields, "nodes")
    if items is None:
        return ()
    if not items:
        case_fields.report("nodes", "nodes must list at least one node")
    if len(items) > MAX_NODES:
        message = f"the case has {len(items)} nodes; the limit is {MAX_NODES}"
        case_fields.report("nodes", message, "too-many-nodes")
    nodes = (_read_node(case_fields.sink, item, number) for number, item in enumerate(items[:MAX_NODES], 1))
    return tuple(node for node in nodes if node is not None)


def _read_node(sink: _Sink, ynode: yaml.Node, number: int) -> Node | None:
    """The node, or None when it has no usable id (nothing could lead to it)."""
    peeked_id = _peek_id(ynode)
    label = f'node "{peeked_id}"' if peeked_id else f"node #{number}"
    fields = _fields(sink, ynode, label, peeked_id, _NODE_KEYS, optional={"known", "choices", "ending"})
    if fields is None:
        return None
    node_id = _ident(fields, "id")
    title = _text(fields, "title", MAX_TITLE_CHARS)
    text = _text(fields, "text", MAX_NODE_TEXT_CHARS)
    known = _read_known(fields)
    choices = _read_choices(fields)
    ending = _read_ending(fields)
    kinds = {"choices", "ending"} & fields.values.keys()
    if len(kinds) == 2:
        fields.report(None, "a node has either choices (a situation) or an ending, not both", "node-kind")
    elif not kinds:
        fields.report(None, "dead end: the node has no choices and no ending", "dead-end")
    if not node_id:
        return None
    return Node(node_id, title, text, choices, ending, known, fields.source)


def _read_known(node_fields: _Fields) -> tuple[str, ...]:
    items = _list(node_fields, "known")
    if items is None:
        return ()
    if len(items) > MAX_KNOWN_ITEMS:
        message = f"known has {len(items)} items; the limit is {MAX_KNOWN_ITEMS}"
        node_fields.report("known", message, "too-long")
    known = []
    for item in items[:_READ_AT_MOST]:
        value = _scalar_text(item)
        if value is None or not value.strip():
            node_fields.report(_line(item), f"each item of known must be a line of text, not {_shown(item)}")
        elif len(value) > MAX_KNOWN_CHARS:
            message = f"a known item is {len(value):,} characters long; the limit is {MAX_KNOWN_CHARS:,}"
            node_fields.report(_line(item), message, "too-long")
        else:
            known.append(value)
    return tuple(known)


def _read_choices(node_fields: _Fields) -> tuple[Choice, ...]:
    items = _list(node_fields, "choices")
    if items is None:
        return ()
    needs = f"a situation needs {MIN_CHOICES} to {MAX_CHOICES}"
    if not items:
        node_fields.report("choices", f"dead end: choices is empty; {needs} choices", "dead-end")
    elif len(items) == 1:
        node_fields.report("choices", f"dead end: the node has only 1 choice; {needs}", "dead-end")
    elif not MIN_CHOICES <= len(items) <= MAX_CHOICES:
        node_fields.report("choices", f"the node has {len(items)} choices; {needs}", "dead-end")
    return tuple(_read_choice(node_fields, item, number) for number, item in enumerate(items[:_READ_AT_MOST], 1))


def _read_choice(node_fields: _Fields, ynode: yaml.Node, number: int) -> Choice:
    # Even a broken choice is kept, so that its goto still counts in the graph checks.
    peeked_id = _peek_id(ynode)
    label = f'choice "{peeked_id}"' if peeked_id else f"choice #{number} of {node_fields.label}"
    fields = _fields(node_fields.sink, ynode, label, node_fields.node_id, _CHOICE_KEYS, optional={"score"})
    if fields is None:
        return Choice(id="", text="", goto="", consequence="")
    return Choice(
        id=_ident(fields, "id"),
        text=_text(fields, "text", MAX_CHOICE_TEXT_CHARS),
        goto=_text(fields, "goto", MAX_ID_CHARS),
        consequence=_text(fields, "consequence", MAX_CONSEQUENCE_CHARS),
        score=_whole(fields, "score", -MAX_SCORE, MAX_SCORE, default=0),
        source=fields.source,
    )


def _read_ending(node_fields: _Fields) -> Ending | None:
    ynode = node_fields.values.get("ending")
    if ynode is None:
        return None
    node_id = node_fields.node_id
    label = f'ending "{node_id}"' if node_id else f"the ending of {node_fields.label}"
    fields = _fields(node_fields.sink, ynode, label, node_id, _ENDING_KEYS, optional={"rating"})
    if fields is None:
        # Still an ending, so that the graph checks treat the node as one.
        return Ending(outcome="", passes=False, principle="", debrief="")
    return Ending(
        outcome=_one_of(fields, "outcome", OUTCOMES, default=""),
        passes=_flag(fields, "passes", default=False),
        principle=_text(fields, "principle", MAX_PRINCIPLE_CHARS),
        debrief=_text(fields, "debrief", MAX_DEBRIEF_CHARS),
        rating=_optional_whole(fields, "rating", 0, 100),
        source=fields.source,
    )


def _text(fields: _Fields, key: str, limit: int) -> str:
    """A text field; any scalar but null counts, so `title: 2024` reads as "2024"."""
    ynode = fields.values.get(key)
    if ynode is None:
        return ""
    value = _scalar_text(ynode)
    if value is None and not _is_null(ynode):
        fields.report(key, f"{key} must be text, not {_shown(ynode)}")
        return ""
    if value is None or not value.strip():
        fields.report(key, f"{key} must not be empty")
        return ""
    if len(value) > limit:
        fields.report(key, f"{key} is {len(value):,} characters long; the limit is {limit:,}", "too-long")
    return value


def _ident(fields: _Fields, key: str) -> str:
    value = _text(fields, key, MAX_ID_CHARS)
    if value and not ID_PATTERN.fullmatch(value):
        rule = 'must be lowercase-kebab: a-z, 0-9 and single hyphens, like "reply-fast"'
        fields.report(key, f'{key} "{value}" {rule}', "bad-id")
    return value


def _whole(fields: _Fields, key: str, low: int, high: int, *, default: int) -> int:
    ynode = fields.values.get(key)
    if ynode is None:
        return default
    value = _int_value(ynode)
    if value is None:
        fields.report(key, f"{key} must be a whole number, not {_shown(ynode)}")
        return default
    if not low <= value <= high:
        fields.report(key, f"{key} must be from {low} to {high}, not {value}")
        return default
    return value


def _optional_whole(fields: _Fields, key: str, low: int, high: int) -> int | None:
    ynode = fields.values.get(key)
    if ynode is None or _is_null(ynode):
        return None
    value = _int_value(ynode)
    if value is None:
        fields.report(key, f"{key} must be a whole number or null, not {_shown(ynode)}")
        return None
    if not low <= value <= high:
        fields.report(key, f"{key} must be from {low} to {high}, or null, not {value}")
        return None
    return value


def _flag(fields: _Fields, key: str, *, default: bool) -> bool:
    ynode = fields.values.get(key)
    if ynode is None:
        return default
    value = _bool_value(ynode)
    if value is None:
        fields.report(key, f"{key} must be true or false, not {_shown(ynode)}")
        return default
    return value


def _one_of(fields: _Fields, key: str, options: Sequence[str], *, default: str) -> str:
    ynode = fields.values.get(key)
    if ynode is None:
        return default
    value = _scalar_text(ynode)
    if value is None or value not in options:
        hint = did_you_mean(value, options) if value else ""
        fields.report(key, f"{key} must be one of {', '.join(options)}, not {_shown(ynode)}{hint}")
        return default
    return value


def _list(fields: _Fields, key: str) -> list[yaml.Node] | None:
    ynode = fields.values.get(key)
    if ynode is None:
        return None
    if not isinstance(ynode, yaml.SequenceNode):
        fields.report(key, f"{key} must be a list, not {_shown(ynode)}")
        return None
    return list(ynode.value)


def _int_value(ynode: yaml.Node) -> int | None:
    if not (isinstance(ynode, yaml.ScalarNode) and ynode.tag == _INT_TAG):
        return None
    try:
        return int(SafeConstructor().construct_yaml_int(ynode))
    except ValueError:  # an explicit !!int on text that is no number, or too many digits
        return None


def _bool_value(ynode: yaml.Node) -> bool | None:
    if not (isinstance(ynode, yaml.ScalarNode) and ynode.tag == _BOOL_TAG):
        return None
    try:
        return bool(SafeConstructor().construct_yaml_bool(ynode))
    except KeyError:  # an explicit !!bool on text that is no truth value
        return None


def _peek_id(ynode: yaml.Node) -> str | None:
    """The id of a mapping not yet checked, to name it in messages about it."""
    if not isinstance(ynode, yaml.MappingNode):
        return None
    for key_node, value_node in ynode.value:
        if _scalar_text(key_node) == "id":
            value = _scalar_text(value_node)
            return value if value and len(value) <= MAX_ID_CHARS else None
    return None


def _scalar_text(ynode: yaml.Node) -> str | None:
    if isinstance(ynode, yaml.ScalarNode) and ynode.tag != _NULL_TAG:
        return str(ynode.value)
    return None


def _is_null(ynode: yaml.Node) -> bool:
    return isinstance(ynode, yaml.ScalarNode) and ynode.tag == _NULL_TAG


def _line(ynode: yaml.Node) -> int:
    return int(ynode.start_mark.line) + 1


def _shown(ynode: yaml.Node) -> str:
    """How a value is named in a message: quoted if it was text, as written otherwise."""
    if isinstance(ynode, yaml.MappingNode):
        return "a mapping"
    if isinstance(ynode, yaml.SequenceNode):
        return "a list"
    if _is_null(ynode):
        return "empty"
    value = str(ynode.value)
    shown = value if len(value) <= 40 else value[:37] + "..."
    return f'"{shown}"' if ynode.tag == _STR_TAG else shown
