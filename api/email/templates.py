"""Merge fields in campaign templates, rendered in Jinja's sandbox within a budget.

Templates are written by workspace members, so they run sandboxed (no attribute tricks) with
strict undefined values: a field the contact lacks is an error naming that field unless the
template gives a default (`{{ first_name | default("there") }}`); it never becomes a blank in a
sent mail. The HTML part is HTML-escaped; subject and text parts are not. Every message gets a
visible unsubscribe link, added as a footer when the template does not place
`{{ unsubscribe_url }}` itself.

Every tenant's templates render in the same workers, so one render (subject, HTML and text for
one contact) is bounded in time and memory, not just in the size of its output:
- the source is at most MAX_TEMPLATE_CHARACTERS, MAX_TEMPLATE_TOKENS tokens and
  MAX_TEMPLATE_NODES syntax nodes, checked before the expensive parse and compile steps;
- a deadline in CPU time of the rendering thread (so other threads sharing the GIL cannot push
  a render over it) and a count of steps (loop iterations, calls, filters, tests, operators,
  comparisons, lookups, literals, assignments), both checked by the sandbox at every step;
- every value the template builds (literals, assignments, results of calls, filters and
  operators) and every operand it compares is size-accounted: no value may exceed
  MAX_RENDERED_CHARACTERS written out (shared items counted each time, so a structure that
  doubles itself is refused), and operations whose result can be far larger than their inputs
  (repetition, integer products and powers, `%` and `format` widths, `replace`, `join`,
  padding, `batch`, `slice`) are refused before they run when it would;
- no filter takes an input over MAX_RENDERED_CHARACTERS, and the slow ones far less; a
  filter's input is counted a step per item as it is drained, at most MAX_ITEMS, so a generator
  one filter returns and the next drains is charged too;
- only the methods in STR_METHODS and DICT_METHODS may be called, with their separators and
  character sets capped, since a single C call (`encode("punycode")`, `strip` with a huge set,
  `fromkeys`) can run for many seconds inside one step; keys a template builds are names or
  compared by text, never hashed as crafted numbers;
- all values and output a render produces together stay under MAX_PRODUCED_CHARACTERS, so
  output gathered in a block, a macro or a loop cannot grow unseen.
Every single step is therefore bounded, and the budget is checked between steps, so a render
ends within about its deadline. Over budget is deterministic for a template and contact (no
per-process memory of earlier failures): a 422 at preview, a failed recipient at send time.
"""

import operator
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from html import escape
from itertools import islice
from string import Formatter
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import ignore_case, make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_context, pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone")
UNSUBSCRIBE_FIELD = "unsubscribe_url"
# A rendered part, and any single value a template builds, written out as text.
MAX_RENDERED_CHARACTERS = 1_000_000
# Everything one render produces: values built and output written, inside blocks included.
# Values stay alive while the render holds them (in `set` and namespaces), so this also bounds
# a render's memory: Python takes up to about 15 bytes a character here (a list of short words).
MAX_PRODUCED_CHARACTERS = 5_000_000
# Loop iterations, calls, filters, operators and lookups in one render: an ordinary template
# takes a few hundred.
MAX_STEPS = 100_000
# CPU seconds of the rendering thread for one render.
RENDER_SECONDS = 1.0
# One part's source: parsing and compiling take about 10 microseconds a character of dense
# template code, so these keep the (cached) compile of any part well under the render deadline.
MAX_TEMPLATE_CHARACTERS = 65_536
MAX_TEMPLATE_TOKENS = 10_000
MAX_TEMPLATE_NODES = 5_000
# Ranges of at most MAX_RANGE numbers, loops nested at most MAX_LOOP_DEPTH deep in a template,
# and powers of at most MAX_POWER_BITS bits.
MAX_RANGE = 1000
MAX_LOOP_DEPTH = 2
MAX_POWER_BITS = 10_000
# Filters that go through their input item by item (a string's items are its characters), and
# how many items they may take: at a microsecond or more per item, a million would take seconds.
ITERATING_FILTERS = frozenset(
    {
        "sort",
        "unique",
        "list",
        "map",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "groupby",
        "sum",
        "min",
        "max",
        "batch",
        "slice",
        "dictsort",
        "join",
        "items",
        "reverse",
    }
)
MAX_ITEMS = 10_000
# The iterating filters that only go through their input once, in order: their input, even a
# list, is handed over item by item, a step each, so the time they spend per item is charged.
STREAMING_FILTERS = ITERATING_FILTERS - {"dictsort", "items", "slice", "reverse"}
# Filters that take far longer than a microsecond a character, and how much text they may take.
SLOW_FILTER_CHARACTERS = {"wordwrap": 20_000, "urlize": 100_000, "pprint": 100_000}
# The methods a template may call, by the type of value: each runs in time about linear in
# its input, with the size checks of check_method_call. Every other method (encode, decode,
# fromkeys, center, count, ...) is refused, as is any method of the other built-in types.
STR_METHODS = frozenset(
    {
        "lower",
        "upper",
        "title",
        "capitalize",
        "startswith",
        "endswith",
        "split",
        "rsplit",
        "replace",
        "strip",
        "lstrip",
        "rstrip",
        "join",
        "format",
    }
)
DICT_METHODS = frozenset({"get", "items", "keys", "values"})
VALUES_WITHOUT_METHODS = (
    bytes,
    bytearray,
    list,
    tuple,
    int,
    float,
    complex,
    set,
    frozenset,
    range,
    type,
)
# Characters in a separator (`split`) or a set of characters to strip (`strip`, `trim`):
# these run in time proportional to the text times the set.
MAX_CHARACTER_SET = 64
PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")
SEQUENCES = (str, bytes, list, tuple)
MISSING_ATTRIBUTE = re.compile(r"^'dict object' has no attribute '([^']*)'$")


class TemplateTooLargeError(TemplateError):
    """The template would build a value or output larger than the limits allow."""


class SourceTooLargeError(TemplateError):
    """The template's own text is too long or too complex to compile."""


class RenderBudgetError(TemplateTooLargeError):
    """The render ran out of time or steps."""


class RenderBudget:
    """What one render may still spend; the sandbox charges it at every step."""

    def __init__(self) -> None:
        self.deadline = time.thread_time() + RENDER_SECONDS
        self.steps_left = MAX_STEPS
        self.characters_left = MAX_PRODUCED_CHARACTERS

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise RenderBudgetError(f"the template takes more than {MAX_STEPS:,} steps")
        if time.thread_time() >= self.deadline:
            raise RenderBudgetError("the template took too long to render")

    def produce(self, characters: int) -> None:
        self.characters_left -= characters
        if self.characters_left < 0:
            raise TemplateTooLargeError(
                f"the template produces more than {MAX_PRODUCED_CHARACTERS:,} characters"
            )


current_budget: ContextVar[RenderBudget | None] = ContextVar("current_budget", default=None)


def budget() -> RenderBudget:
    spending = current_budget.get()
    if spending is None:
        # Only render() runs templates; compile-time evaluation outside it is refused.
        raise TemplateTooLargeError("templates are evaluated only while rendering")
    return spending


def leaf_size(item: Any) -> int | None:
    """Characters a value without items takes written out; None for a container."""
    kind = type(item)
    if kind is str:
        return len(item)
    if kind is int:
        return int.bit_length(item) // 3 + 2
    if isinstance(item, str | bytes):
        return len(item)
    if isinstance(item, bool | float | None | Undefined):
        return 5
    if isinstance(item, int):
        return item.bit_length() // 3 + 2
    if isinstance(item, range):
        return 32
    if isinstance(item, Namespace | Mapping) or (
        isinstance(item, Collection) and not isinstance(item, Iterator)
    ):
        return None
    # Loops, macros, cyclers, generators: written out as a short description.
    return 64


def items_of(container: Any) -> tuple[int, list[Any]]:
    """A container's own characters (brackets, separators) and its items."""
    if isinstance(container, Namespace):
        return 16, [object.__getattribute__(container, "_Namespace__attrs")]
    if isinstance(container, Mapping):
        return 2 + 4 * len(container), [*container.keys(), *container.values()]
    return 2 + 2 * len(container), list(container)


def text_size(value: Any, limit: int = MAX_RENDERED_CHARACTERS) -> int:
    """About how many characters `value` takes written out (str() of a container writes its
    items), counting shared items each time, as writing out does: `[a, a]` is twice `a`.
    Each distinct container is visited once, so a structure that doubles itself by sharing is
    measured in a step per level; stops as soon as it passes `limit`."""
    size = leaf_size(value)
    if size is not None:
        return size
    sizes: dict[int, int] = {}
    # A namespace can hold itself; written out, the inner one is a short `...`.
    in_progress: set[int] = set()
    # (container, its items that are containers or None before it is opened, size so far)
    pending: list[tuple[Any, list[Any] | None, int]] = [(value, None, 0)]
    while pending:
        container, inner, size = pending.pop()
        if inner is not None:
            size += sum(sizes.get(id(item), 5) for item in inner)
            if size > limit:
                return size
            in_progress.discard(id(container))
            sizes[id(container)] = size
            continue
        if id(container) in sizes:
            continue
        size, items = items_of(container)
        inner = []
        for item in items:
            item_size = leaf_size(item)
            if item_size is None:
                inner.append(item)
            else:
                size += item_size
        if size > limit:
            return size
        in_progress.add(id(container))
        pending.append((container, inner, size))
        pending.extend(
            (item, None, 0)
            for item in inner
            if id(item) not in sizes and id(item) not in in_progress
        )
    return sizes[id(value)]


def require_size(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARACTERS:
        raise TemplateTooLargeError(
            f"{what} would be larger than {MAX_RENDERED_CHARACTERS:,} characters"
        )


def produced(value: Any) -> Any:
    """Charges a value the template built (or writes out) and refuses one that is too large."""
    size = text_size(value)
    require_size(size, "a value")
    budget().produce(size)
    return value


def as_text(value: Any) -> str | bytes:
    if isinstance(value, str | bytes):
        return value
    require_size(text_size(value), "a value")
    return str(value)


def replaced_size(text: Any, old: Any, new: Any, count: Any = None) -> int:
    subject, old_text, new_text = as_text(text), as_text(old), as_text(new)
    if isinstance(subject, str) and isinstance(old_text, str):
        found = subject.count(old_text) if old_text else len(subject) + 1
    else:
        found = len(subject) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    # Markup escapes what it inserts, up to six characters for one.
    grows = len(new_text) * (6 if isinstance(subject, Markup) else 1) - len(old_text)
    return len(subject) + found * max(0, grows)


def width_of(value: Any) -> int:
    return value if isinstance(value, int) else len(as_text(value))


def printf_size(template: Any, values: Any) -> int:
    text = as_text(template)
    if not isinstance(text, str):
        return len(text) + text_size(values)
    fields = PRINTF_FIELD.findall(text)
    if any("*" in (width, precision) for width, precision in fields):
        raise TemplateTooLargeError("a format may not take its width from the values")
    widest = max((int(n) for field in fields for n in field if n), default=0)
    return len(text) + len(fields) * (text_size(values) + widest)


def format_size(template: str, values: Any) -> int:
    fields = [spec for _, name, spec, _ in Formatter().parse(template) if name is not None]
    if any("{" in (spec or "") for spec in fields):
        raise TemplateTooLargeError("a format may not take its width from the values")
    widest = max((int(n) for spec in fields for n in re.findall(r"\d+", spec or "")), default=0)
    return len(template) + len(fields) * (text_size(values) + widest)


def joined_size(separator: Any, items: list[Any]) -> int:
    return sum(text_size(item) for item in items) + len(items) * len(as_text(separator))


def bounded_range(*arguments: int) -> range:
    numbers = range(*arguments)
    if len(numbers) > MAX_RANGE:
        raise TemplateTooLargeError(f"a range may have at most {MAX_RANGE} numbers")
    return numbers


def check_count(count: Any, what: str) -> None:
    if not isinstance(count, int) or count > MAX_RANGE:
        raise TemplateTooLargeError(f"{what} takes a whole number of at most {MAX_RANGE}")


# Checks before a filter runs, for the filters whose result a template can make far larger than
# their input. Each takes the filter's own arguments and answers them (join reads its items once).
FilterCheck = Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]


def check_replace(
    text: Any, old: Any, new: Any, count: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    require_size(replaced_size(text, old, new, count), "a replace")
    return (text, old, new, count), {}


def check_padding(value: Any, width: Any = 80, *rest: Any, **options: Any) -> Any:
    require_size(max(text_size(value), width_of(width)), "padding")
    return (value, width, *rest), options


def check_indent(text: Any, width: Any = 4, *rest: Any, **options: Any) -> Any:
    subject = as_text(text)
    lines = (subject.count("\n") if isinstance(subject, str) else subject.count(b"\n")) + 1
    require_size(len(subject) + lines * width_of(width), "an indent")
    return (text, width, *rest), options


def check_join(items: Any, separator: Any = "", *rest: Any, **options: Any) -> Any:
    listed = list(items)
    require_size(joined_size(separator, listed), "a join")
    return (listed, separator, *rest), options


def check_printf(template: Any, *values: Any, **named: Any) -> Any:
    require_size(printf_size(template, named or values), "a format")
    return (template, *values), named


def check_wordwrap(text: Any, width: Any = 79, *rest: Any, **options: Any) -> Any:
    wrapstring = options.get("wrapstring", rest[1] if len(rest) > 1 else None)
    require_size(len(as_text(text)) * (1 + len(as_text(wrapstring or "\n"))), "a wordwrap")
    return (text, width, *rest), options


def check_batch(items: Any, count: Any, *rest: Any, **options: Any) -> Any:
    check_count(count, "batch")
    return (items, count, *rest), options


def check_slice(items: Any, count: Any, *rest: Any, **options: Any) -> Any:
    check_count(count, "slice")
    return (items, count, *rest), options


def check_tojson(value: Any, indent: Any = None) -> Any:
    if indent is not None and (not isinstance(indent, int) or indent > 8):
        raise TemplateTooLargeError("tojson indents by at most 8")
    return (value, indent), {}


def check_character_set(characters: Any, what: str) -> None:
    if characters is not None and len(as_text(characters)) > MAX_CHARACTER_SET:
        raise TemplateTooLargeError(f"{what} takes at most {MAX_CHARACTER_SET} characters")


def check_trim(text: Any, chars: Any = None) -> Any:
    check_character_set(chars, "trim")
    return (text, chars), {}


def check_urlize(text: Any, *rest: Any, **options: Any) -> Any:
    if any(text_size(extra) > 200 for extra in (*rest, *options.values())):
        raise TemplateTooLargeError("urlize takes options of at most 200 characters")
    return (text, *rest), options


FILTER_CHECKS: dict[str, FilterCheck] = {
    "replace": check_replace,
    "center": check_padding,
    "indent": check_indent,
    "join": check_join,
    "format": check_printf,
    "wordwrap": check_wordwrap,
    "batch": check_batch,
    "slice": check_slice,
    "tojson": check_tojson,
    "urlize": check_urlize,
    "trim": check_trim,
}


def check_filter_inputs(name: str, values: Iterable[Any]) -> None:
    """No filter runs on a value over the size cap (`|string`, `|tojson`, `|urlencode` or
    `|pprint` of a huge structure), and the slow ones only on far less."""
    limit = SLOW_FILTER_CHARACTERS.get(name, MAX_RENDERED_CHARACTERS)
    for value in values:
        if text_size(value, limit) > limit:
            raise TemplateTooLargeError(f"{name} takes values of at most {limit:,} characters")


def counted(items: Iterable[Any], what: str) -> Iterator[Any]:
    """Items as they are drained, a step each and at most MAX_ITEMS: a generator (from `unique`,
    `map`, `batch`, `reverse`, ...) is drained by whatever takes it next, inside one step."""
    for number, item in enumerate(items, 1):
        if number > MAX_ITEMS:
            raise TemplateTooLargeError(f"{what} takes at most {MAX_ITEMS:,} items")
        budget().step()
        yield item


def metered_input(name: str, value: Any) -> Any:
    """A filter's input: any iterable that is not a collection is counted as it is drained;
    a collection too large for an iterating filter is refused, and a streaming one gets it
    counted too."""
    if not isinstance(value, Iterable):
        return value
    if not isinstance(value, Sized):
        return counted(value, name)
    if name in ITERATING_FILTERS and len(value) > MAX_ITEMS:
        raise TemplateTooLargeError(f"{name} takes at most {MAX_ITEMS:,} items")
    return counted(value, name) if name in STREAMING_FILTERS else value


@pass_environment
def unique_by_text(
    environment: Environment,
    value: Iterable[Any],
    case_sensitive: bool = False,
    attribute: str | int | None = None,
) -> Iterator[Any]:
    """Jinja's `unique`, but a key that is not text is compared by its type and repr: Python
    randomises the hash of text, while numbers (multiples of 2**61 - 1) and tuples of them can
    be made to share one hash, which makes a set of them quadratic."""
    getter = make_attrgetter(
        environment, attribute, postprocess=None if case_sensitive else ignore_case
    )
    seen: set[str | tuple[str, str]] = set()
    for item in value:
        key = getter(item)
        text_key = key if isinstance(key, str) else (type(key).__name__, repr(key))
        if text_key not in seen:
            seen.add(text_key)
            yield item


def keyword_dict(**items: Any) -> dict[str, Any]:
    """`dict(a=1)`; only names as keys, so a template cannot build a dict of crafted keys."""
    return items


def keyword_namespace(**attributes: Any) -> Namespace:
    """`namespace(a=1)`; only names as keys, like `dict`."""
    return Namespace(**attributes)


def metered_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, charged a step before and its result after, with its size check if any, and
    its input counted item by item."""
    check = FILTER_CHECKS.get(name)
    passes_first = getattr(function, "jinja_pass_arg", None) is not None

    @wraps(function)
    def run(*arguments: Any, **options: Any) -> Any:
        budget().step()
        first, rest = (arguments[:1], arguments[1:]) if passes_first else ((), arguments)
        check_filter_inputs(name, (*rest, *options.values()))
        if rest:
            rest = (metered_input(name, rest[0]), *rest[1:])
            arguments = (*first, *rest)
        if check is not None:
            checked, options = check(*rest, **options)
            arguments = (*first, *checked)
        return produced(function(*arguments, **options))

    return run


def metered_test(function: Any) -> Callable[..., Any]:
    """A test (`is in`, `is eq`, ...), charged a step and the size of what it compares."""

    @wraps(function)
    def run(*arguments: Any, **options: Any) -> Any:
        budget().step()
        for value in (*arguments, *options.values()):
            produced(value)
        return function(*arguments, **options)

    return run


def allowed_methods(value: Any) -> frozenset[str] | None:
    """The attributes a template may use on a built-in value (none on a class); None for the
    objects Jinja's own sandbox rules cover (loops, namespaces, macros, undefined values)."""
    if isinstance(value, str):
        return STR_METHODS
    if isinstance(value, dict):
        return DICT_METHODS
    if isinstance(value, VALUES_WITHOUT_METHODS):
        return frozenset()
    return None


def require_allowed_method(method: Any) -> None:
    """Refuses calling a built-in value's method that is not allowed, however it was reached."""
    owner = getattr(method, "__self__", None)
    allowed = allowed_methods(owner)
    if allowed is not None and getattr(method, "__name__", "") not in allowed:
        raise SecurityError(f"templates may not call {type(owner).__name__} methods like this")


def check_method_call(method: Any, arguments: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """Size checks for the str methods that can multiply their input or take time in the size
    of their text times their argument."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return arguments
    name = getattr(method, "__name__", "")
    if name == "replace":
        require_size(replaced_size(owner, *arguments[:3]), "a replace")
    elif name == "join" and arguments:
        listed = list(counted(arguments[0], "a join"))
        require_size(joined_size(owner, listed), "a join")
        return (listed, *arguments[1:])
    elif name == "format":
        require_size(format_size(owner, (arguments, options)), "a format")
    elif name in ("split", "rsplit"):
        check_character_set(options.get("sep", arguments[0] if arguments else None), name)
    elif name in ("strip", "lstrip", "rstrip"):
        check_character_set(arguments[0] if arguments else None, name)
    return arguments


@pass_eval_context
def metered_concat(eval_context: EvalContext, parts: list[Any]) -> str:
    """`a ~ b`, refused before it joins parts that together are too large."""
    require_size(sum(text_size(part) for part in parts), "a concatenation")
    return markup_join(parts) if eval_context.autoescape else str_join(parts)


def metered_value(value: Any) -> Any:
    """A value the template builds (a list, tuple or dict literal) or assigns (`set`, also to a
    namespace attribute), or an operand it compares: one step, and its size is accounted, so a
    structure that doubles itself is refused before it outgrows the limit."""
    budget().step()
    return produced(value)


def metered_iteration(items: Iterable[Any]) -> Iterator[Any]:
    """A template loop's items, one step each."""
    for item in items:
        budget().step()
        yield item


@pass_context
def metered_output(context: Context, value: Any) -> Any:
    """Every piece of output, wherever it goes (the message, a block, a macro's result)."""
    budget().step()
    return produced(value)


def environment_call(name: str, arguments: list[nodes.Node], lineno: int) -> nodes.Call:
    return nodes.Call(
        nodes.EnvironmentAttribute(name, lineno=lineno), arguments, [], None, None, lineno=lineno
    )


def metered(node: nodes.Node) -> nodes.Call:
    return environment_call("metered_value", [node], node.lineno)


class MeteredTemplate(NodeTransformer):
    """Rewrites a parsed template so loops, `~`, literal text, the values it builds and assigns
    and the operands it compares are charged to the budget."""

    # Jinja's visitors dispatch on the node's class name.
    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        if node.recursive:
            raise TemplateTooLargeError("recursive loops are not supported")
        self.generic_visit(node)
        node.iter = environment_call("metered_iteration", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return environment_call("metered_concat", [parts], node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return metered(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return metered(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        # A tuple to assign to (`for a, b in ...`, `set a, b = ...`) builds nothing.
        return metered(node) if node.ctx == "load" else node

    def visit_Assign(self, node: nodes.Assign) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.node = metered(node.node)
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:  # noqa: N802
        """`==`, `<`, `in` and the rest run in Python, as long as their operands are large."""
        self.generic_visit(node)
        node.expr = metered(node.expr)
        for operand in node.ops:
            operand.expr = metered(operand.expr)
        return node

    def visit_TemplateData(self, node: nodes.TemplateData) -> nodes.Node:  # noqa: N802
        """The template's own text becomes an expression, so it is charged like any output."""
        text = nodes.Const(node.data, lineno=node.lineno)
        return nodes.MarkSafeIfAutoescape(text, lineno=node.lineno)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's sandbox (no changes to lists and dicts either), charging the render's budget at
    every call, filter, operator and lookup, and checking sizes before anything large is built.
    No constant folding at compile time, so every expression is charged when it runs."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"+", "-"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            finalize=metered_output,
            optimized=False,
        )
        self.globals["range"] = bounded_range
        self.globals["dict"] = keyword_dict
        self.globals["namespace"] = keyword_namespace
        del self.globals["lipsum"]
        self.filters["unique"] = unique_by_text
        self.filters = {name: metered_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: metered_test(test) for name, test in self.tests.items()}
        self.metered_iteration = metered_iteration
        self.metered_concat = metered_concat
        self.metered_value = metered_value

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = allowed_methods(obj)
        if allowed is not None and attr not in allowed:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget().step()
        # `attributes.copy` is the contact's field, not the dict method templates may not call.
        if isinstance(obj, dict) and attribute not in DICT_METHODS and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget().step()
        item = super().getitem(obj, argument)
        # A slice is a new value (`big[::-1]`), an index or key one that exists already.
        return produced(item) if isinstance(argument, slice) else item

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget().step()
        require_allowed_method(obj)
        args = check_method_call(obj, args, kwargs)
        return produced(super().call(context, obj, *args, **kwargs))

    def call_unop(self, context: Context, operator_name: str, arg: Any) -> Any:
        budget().step()
        return super().call_unop(context, operator_name, arg)

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        budget().step()
        if operator_name == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() * right > MAX_POWER_BITS
            ):
                raise TemplateTooLargeError("the template computes too large a number")
            return produced(operator.pow(left, right))
        if operator_name == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sized, int) and isinstance(count, int):
                # A product has at most as many bits as its factors together.
                if sized.bit_length() + count.bit_length() > MAX_POWER_BITS:
                    raise TemplateTooLargeError("the template computes too large a number")
            elif isinstance(sized, SEQUENCES) and isinstance(count, int):
                require_size(text_size(sized) * count, "a repetition")
        elif operator_name == "+" and isinstance(left, SEQUENCES) and isinstance(right, SEQUENCES):
            require_size(text_size(left) + text_size(right), "a concatenation")
        elif operator_name == "%" and isinstance(left, str | bytes):
            require_size(printf_size(left, right), "a format")
        return produced(super().call_binop(context, operator_name, left, right))


html_environment = BoundedEnvironment(autoescape=True)
text_environment = BoundedEnvironment(autoescape=False)


def loop_depth(node: nodes.Node) -> int:
    inner = max((loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return inner + 1 if isinstance(node, nodes.For) else inner


def node_count(node: nodes.Node) -> int:
    return 1 + sum(node_count(child) for child in node.iter_child_nodes())


def check_source_size(environment: BoundedEnvironment, source: str) -> None:
    """Refuses a source too long to parse and compile quickly, before either runs."""
    if len(source) > MAX_TEMPLATE_CHARACTERS:
        raise SourceTooLargeError(
            f"a template part may have at most {MAX_TEMPLATE_CHARACTERS:,} characters"
        )
    tokens = environment.lexer.tokenize(source)
    if sum(1 for _ in islice(tokens, MAX_TEMPLATE_TOKENS + 1)) > MAX_TEMPLATE_TOKENS:
        raise SourceTooLargeError(
            f"a template part may have at most {MAX_TEMPLATE_TOKENS:,} tokens"
        )


@lru_cache(maxsize=128)
def compiled(source: str, *, html: bool) -> Template:
    """A campaign renders the same few sources thousands of times; compiling is ~50x rendering.
    The cache only saves work: every render of a template is charged the same."""
    environment = html_environment if html else text_environment
    check_source_size(environment, source)
    tree = environment.parse(source)
    if node_count(tree) > MAX_TEMPLATE_NODES:
        raise SourceTooLargeError(
            f"a template part may have at most {MAX_TEMPLATE_NODES:,} expressions and tags"
        )
    if loop_depth(tree) > MAX_LOOP_DEPTH:
        raise TemplateTooLargeError(f"loops may nest at most {MAX_LOOP_DEPTH} deep")
    metered = MeteredTemplate().visit(tree)
    metered.set_environment(environment)
    return environment.from_string(metered)


@dataclass(frozen=True)
class EmailContent:
    subject: str
    html: str
    text: str | None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str | None


class RenderError(Exception):
    """A template cannot be rendered for a contact; the message names the reason and `code`
    is the stable word clients and the send ledger carry."""

    code = "template_invalid"


class MergeFieldError(RenderError):
    """The contact lacks a field the template uses without a default."""

    code = "merge_field_missing"


class TemplateInvalidError(RenderError):
    """The template itself is broken (syntax) or raises."""


class TemplateOverBudgetError(TemplateInvalidError):
    """Rendering would take more time, steps or memory than one render may."""

    code = "template_over_budget"


class TemplateSourceTooLargeError(TemplateInvalidError):
    """The template's text is longer or more complex than a template may be."""

    code = "template_too_large"


def bounded(chunks: Iterator[str]) -> str:
    """Joins rendered output, stopping as soon as it grows past the limit."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARACTERS:
            raise TemplateTooLargeError("the rendered message is larger than 1,000,000 characters")
        parts.append(chunk)
    return "".join(parts)


def render_part(source: str, fields: dict[str, Any], *, html: bool) -> str:
    return bounded(compiled(source, html=html).generate(fields))


def missing_field(error: UndefinedError) -> str:
    """Names a missing field as the template writes it: `attributes.city`, not Jinja's
    "'dict object' has no attribute 'city'"."""
    message = error.message or "a merge field is undefined"
    attribute = MISSING_ATTRIBUTE.match(message)
    if attribute:
        return f"missing merge field: attributes.{attribute.group(1)}"
    name = message.removesuffix(" is undefined").strip("'")
    return f"missing merge field: {name}"


def merge_fields(contact: dict[str, Any], unsubscribe_url: str) -> dict[str, Any]:
    """The values a template may use; empty values are left out so that they count as missing."""
    fields: dict[str, Any] = {
        name: contact[name] for name in CONTACT_FIELDS if contact.get(name) not in (None, "")
    }
    attributes = contact.get("attributes") or {}
    fields["attributes"] = {
        key: value for key, value in attributes.items() if value not in (None, "")
    }
    # A flow's email also sees its run's event (an abandoned cart's items and link).
    event = contact.get("event")
    if isinstance(event, dict):
        fields["event"] = {key: value for key, value in event.items() if value not in (None, "")}
    fields[UNSUBSCRIBE_FIELD] = unsubscribe_url
    return fields


def render(content: EmailContent, contact: dict[str, Any], unsubscribe_url: str) -> RenderedEmail:
    fields = merge_fields(contact, unsubscribe_url)
    if text_size(fields) > MAX_RENDERED_CHARACTERS:
        raise TemplateInvalidError("the contact's merge fields are too large to render")
    spending = current_budget.set(RenderBudget())
    try:
        subject = render_part(content.subject, fields, html=False)
        html = render_part(content.html, fields, html=True)
        text = render_part(content.text, fields, html=False) if content.text is not None else None
    except UndefinedError as error:
        raise MergeFieldError(missing_field(error)) from error
    except SourceTooLargeError as error:
        raise TemplateSourceTooLargeError(str(error.message)) from error
    except TemplateTooLargeError as error:
        raise TemplateOverBudgetError(str(error.message)) from error
    except TemplateError as error:
        raise TemplateInvalidError(f"template error: {error.message}") from error
    except Exception as error:
        # Whatever else a template's expression raises ({{ 1 / 0 }}, a filter on the wrong
        # type) is the template's fault, not a reason to stop the worker.
        raise TemplateInvalidError(f"template error: {type(error).__name__}: {error}") from error
    finally:
        current_budget.reset(spending)
    # Judged on the output, so a link hidden in a comment or a false branch does not count.
    if escape(unsubscribe_url) not in html:
        html += (
            '<p style="font-size:12px;color:#666">'
            f'<a href="{escape(unsubscribe_url)}">Unsubscribe</a></p>'
        )
    if text is not None and unsubscribe_url not in text:
        text += f"\n\nUnsubscribe: {unsubscribe_url}\n"
    return RenderedEmail(" ".join(subject.split()), html, text)
