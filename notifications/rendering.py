"""Rendering the translatable templates under `notifications/templates/notifications/`.

- `kinds/<kind>/title.txt`, `kinds/<kind>/body.txt`: in-app and push text of a kind;
- `email/<template>/subject.txt`, `body.txt`, `body.html`: the emails (welcome, notification,
  transactional, marketing);
- `sms/<template>.txt`: SMS texts (`phone_verification_code`, `notification`).

Text templates render without HTML escaping (they are not HTML); the HTML email renders through
Django's normal engine (escaped). Every render happens inside `translation.override(language)`,
so `{% translate %}` and `{% blocktranslate %}` give the recipient's language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.template import Context, Engine, TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import render_to_string
from django.utils import translation

TEMPLATES = Path(__file__).resolve().parent / "templates"

_text = Engine(
    dirs=[str(TEMPLATES)],
    autoescape=False,
    libraries={"i18n": "django.templatetags.i18n"},
)


class TemplateMissing(LookupError):
    pass


def render_text(name: str, context: dict[str, Any], *, language: str) -> str:
    try:
        template = _text.get_template(name)
    except (TemplateDoesNotExist, TemplateSyntaxError) as exc:
        raise TemplateMissing(f"template {name}: {exc}") from None
    if translation.get_language() == language:  # already active: skip the switch and back
        return template.render(Context(context, autoescape=False)).strip()
    with translation.override(language):
        return template.render(Context(context, autoescape=False)).strip()


def text_exists(name: str) -> bool:
    try:
        _text.get_template(name)
    except (TemplateDoesNotExist, TemplateSyntaxError):
        return False
    return True


def render_kind(kind: str, context: dict[str, Any], *, language: str) -> tuple[str, str]:
    """(title, body) of a notification kind; the title is one line."""
    with translation.override(language):  # once for both templates
        title = render_text(f"notifications/kinds/{kind}/title.txt", context, language=language)
        body = render_text(f"notifications/kinds/{kind}/body.txt", context, language=language)
    return " ".join(title.split())[:255], body


def render_email(template: str, context: dict[str, Any], *,
                 language: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an email template."""
    base = f"notifications/email/{template}"
    subject = render_text(f"{base}/subject.txt", context, language=language)
    text = render_text(f"{base}/body.txt", context, language=language)
    try:
        with translation.override(language):
            html = render_to_string(f"{base}/body.html", context)
    except (TemplateDoesNotExist, TemplateSyntaxError) as exc:
        raise TemplateMissing(f"template {base}/body.html: {exc}") from None
    return " ".join(subject.split())[:255], text, html


def render_sms(template: str, context: dict[str, Any], *, language: str) -> str:
    return render_text(f"notifications/sms/{template}.txt", context, language=language)
