"""The annotator's forms. They check the shape of what is sent; annotation's services hold the
rules (an error they raise is shown on the form)."""

from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator

from annotation.models import Guideline, Skip
from tandem import idempotency


class PromptForm(forms.Form):
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "autocomplete": "off", "spellcheck": "true"}),
        strip=True,
    )
    # A fresh key per rendered form: submitting it twice (a double click, the browser's resend
    # after a failed response) writes the prompt once (annotation.services).
    request_key = forms.RegexField(
        regex=idempotency.KEY,
        error_messages={"invalid": idempotency.KEY_RULE},
        initial=lambda: uuid.uuid4().hex,
        required=False,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.ANNOTATION_MAX_PROMPT_CHARS
        self.fields["prompt"].widget.attrs["maxlength"] = str(limit)
        self.fields["prompt"].validators.append(MaxLengthValidator(limit))


class NewDialogueForm(PromptForm):
    guideline = forms.ChoiceField(
        choices=Guideline.choices, initial=Guideline.HELPFULNESS, widget=forms.RadioSelect
    )
    risky = forms.BooleanField(required=False, label="risky / adversarial prompt")


class SkipForm(forms.Form):
    reason = forms.ChoiceField(choices=Skip.Reason.choices)
    note = forms.CharField(max_length=500, required=False, strip=True)
