"""Rendering user-written templates: named missing fields, broken and oversized templates
refused, and an unsubscribe link that cannot be hidden away."""

import uuid

import pytest

from api import email_templates
from api.email_templates import (
    EmailContent,
    MergeFieldError,
    TemplateInvalidError,
    render,
)

CONTACT = {"email": "jana@example.org", "first_name": "Jana", "attributes": {"city": "Brno"}}
LINK = "https://edge.example/api/v1/unsubscribe?token=abc"


def html_of(template: str) -> str:
    return render(EmailContent("Hi", template, None), CONTACT, LINK).html


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ last_name }}", "missing merge field: last_name"),
        ("{{ attributes.loyalty_tier }}", "missing merge field: attributes.loyalty_tier"),
    ],
)
def test_a_missing_field_is_named_as_the_template_writes_it(template: str, named: str) -> None:
    with pytest.raises(MergeFieldError) as caught:
        html_of(template)
    assert str(caught.value) == named


@pytest.mark.parametrize(
    "template",
    [
        "{{ first_name ",
        "{{ 'x' * 50000000 }}",
        "{{ 50000000 * 'x' }}",
        "{% for i in range(2000) %}{{ 'y' * 1000 }}{% endfor %}",
    ],
)
def test_broken_or_oversized_templates_are_refused_not_rendered(template: str) -> None:
    with pytest.raises(TemplateInvalidError):
        html_of(template)


def test_the_unsubscribe_link_is_added_unless_the_output_really_shows_it() -> None:
    placed = html_of('<a href="{{ unsubscribe_url }}">Leave</a>')
    assert placed.count(LINK) == 1
    hidden = html_of("{# {{ unsubscribe_url }} #}{% if false %}{{ unsubscribe_url }}{% endif %}Hi")
    assert hidden.endswith(f'<a href="{LINK}">Unsubscribe</a></p>')
    text = render(EmailContent("Hi", "<p>Hi</p>", "Hello {{ first_name }}"), CONTACT, LINK).text
    assert text == f"Hello Jana\n\nUnsubscribe: {LINK}\n"


@pytest.mark.parametrize(
    "template",
    [
        "{{ 999999999 ** 99999999 }}",
        "{% for i in range(100000) %}{% endfor %}",
        "{% for a in [1] %}" * 3 + "{% endfor %}" * 3,
        "{{ 1 / 0 }}",
        "{{ attributes.city | round(2) }}",
        "{{ first_name + 1 }}",
    ],
)
def test_templates_that_would_hang_or_crash_the_worker_are_refused(template: str) -> None:
    with pytest.raises(TemplateInvalidError):
        html_of(template)


def test_small_loops_and_powers_still_render() -> None:
    assert html_of("{% for i in range(3) %}{{ i }}{% endfor %} {{ 2 ** 10 }}").startswith(
        "012 1024"
    )


# Templates from the review that ran for seconds to hours or built huge values: each must be
# refused with an error (that they end at all proves the bound), never rendered.
WORK_AND_MEMORY_ATTACKS = [
    # replace-chains: 1M -> 10M -> 100M characters
    "{{ ('x' * 1000000) | replace('x', 'xxxxxxxxxx') | replace('x', 'xxxxxxxxxx') | length }}",
    "{{ ('x' * 1000000).replace('x', 'xxxxxxxxxx').replace('x', 'xxxxxxxxxx') | length }}",
    # nested loops doing big work per iteration, and a million empty iterations
    "{% for i in range(1000) %}{% for j in range(1000) %}"
    "{{ ('x' * 100000) | replace('x', 'y') | length }}{% endfor %}{% endfor %}",
    "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    # loops multiplied through a macro, which the loop-depth check cannot see
    "{% macro inner() %}{% for j in range(1000) %}{{ j }}{% endfor %}{% endmacro %}"
    "{% for i in range(1000) %}{% for k in range(1000) %}{{ inner() }}{% endfor %}{% endfor %}",
    # output gathered in a block, not streamed
    "{% set page %}{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}{% endset %}"
    "{{ page | length }}",
    "{% set page %}{% for i in range(1000) %}" + "x" * 100000 + "{% endfor %}{% endset %}"
    "{{ page | length }}",
    # doubling by concatenation
    "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    # many references to one big value, written out
    "{{ ['x' * 1000000] * 1000 }}",
    "{% set b = 'x' * 600000 %}{{ [b, b, b] | join | length }}",
    "{{ ('x' * 1000000).join(['y'] * 1000) | length }}",
    "{% set b = 'x' * 600000 %}{{ [b, b, b] }}",
    "{% set b = 'x' * 600000 %}{{ [b, b, b] | tojson | length }}",
    "{% set b = 'x' * 600000 %}{{ ('%s' * 3) % (b, b, b) }}",
    "{% set b = 'x' * 600000 %}{{ [b, b, b] | string | length }}",
    # widths and counts taken from the template
    "{{ '%999999999s' | format('x') | length }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '{:>999999999}'.format('x') | length }}",
    "{{ 'x' | center(999999999) | length }}",
    "{{ 'x'.center(999999999) | length }}",
    "{{ 'x'.ljust(999999999) | length }}",
    "{{ 'a\nb' | indent(999999999) | length }}",
    "{{ range(1000) | map('center', 999999) | list | length }}",
    "{{ [1] | batch(999999999, 0) | list | length }}",
    "{{ [1] | slice(999999999) | list | length }}",
    "{{ (1).to_bytes(999999999, 'big') | length }}",
    "{{ 'x\ty'.expandtabs(999999999) | length }}",
    "{% for x in [1, 2] recursive %}{{ loop([x]) }}{% endfor %}",
]


@pytest.mark.parametrize(
    "template",
    WORK_AND_MEMORY_ATTACKS,
    ids=[f"attack-{n:02}" for n in range(len(WORK_AND_MEMORY_ATTACKS))],
)
def test_templates_that_would_take_hours_or_gigabytes_are_refused(template: str) -> None:
    with pytest.raises(TemplateInvalidError):
        html_of(template)


def test_lorem_ipsum_is_not_offered() -> None:
    with pytest.raises(MergeFieldError, match="lipsum"):
        html_of("{{ lipsum(1000000) | length }}")


def test_a_render_past_its_deadline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(email_templates, "RENDER_SECONDS", 0.0)
    with pytest.raises(TemplateInvalidError, match="too long"):
        html_of("{{ first_name | upper }}")


def test_ordinary_templates_still_render() -> None:
    contact = {
        **CONTACT,
        "attributes": {"products": [{"name": "Mug", "price": 9.5}, {"name": "Tee", "price": 20}]},
    }
    html = render(
        EmailContent(
            "{{ first_name | upper }}, {{ 'news' | title }}",
            "{% macro button(label) %}<b>{{ label }}</b>{% endmacro %}"
            "{% set intro %}Hi {{ first_name ~ '!' }}{% endset %}{{ intro }}"
            "{% for p in attributes.products %}{{ loop.index }}. {{ p.name | replace('M', 'm') }}"
            " {{ '%.2f' | format(p.price) }} {{ '{:>6}'.format(p.name) }}{% endfor %}"
            "{{ attributes.products | map(attribute='name') | join(', ') }}"
            "{{ button('Shop <now>') }}{{ '<i>' ~ first_name }}",
            None,
        ),
        contact,
        LINK,
    )
    assert html.subject == "JANA, News"
    assert html.html.startswith(
        "Hi Jana!1. mug 9.50    Mug2. Tee 20.00    TeeMug, Tee<b>Shop &lt;now&gt;</b>&lt;i&gt;Jana"
    )


def test_a_template_that_ran_out_of_budget_is_refused_at_once_after_a_few_contacts() -> None:
    hours = (
        f"{{# {uuid.uuid4()} #}}"
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    )
    errors = []
    for _ in range(email_templates.BUDGET_FAILURES_BEFORE_REFUSAL + 1):
        with pytest.raises(TemplateInvalidError) as caught:
            html_of(hours)
        errors.append(str(caught.value))
    assert "refused" in errors[-1] and "refused" not in errors[0]
