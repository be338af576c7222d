"""Rendering user-written templates: named missing fields, broken and oversized templates
refused, and an unsubscribe link that cannot be hidden away."""

import pytest

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
