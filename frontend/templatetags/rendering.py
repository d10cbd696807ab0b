"""`{{ text|as_markdown }}`: a model's reply as the comparison JSON renders it (sanitized)."""

from django import template
from django.utils.safestring import SafeString, mark_safe

from annotation.rendering import markdown_html

register = template.Library()


@register.filter
def as_markdown(text: str) -> SafeString:
    return mark_safe(markdown_html(text))  # safe: escaped and sanitized there
