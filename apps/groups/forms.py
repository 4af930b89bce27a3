"""Group pages' forms: the group's settings (with the canary schedule as text), the
member rows of the create flow and the weights editor, and the "Try it" box. They
validate and shape; services save."""

from __future__ import annotations

import json
import math
from typing import Any, cast

from django import forms
from django.conf import settings
from django.forms import formset_factory

from apps.core.errors import ApplicationError
from apps.groups.models import Membership, ModelGroup
from apps.groups.selectors import members_in_order, version_choices

GROUP_FIELDS = ["name", "strategy", "description", "hypothesis", "primary_metric"]
SCHEDULE_HELP = (
    "The challenger's share over time: percent@minutes after the test starts, "
    "e.g. 5,25@60,50@120,100@240 (a step without @ starts at 0 minutes)."
)


def parse_canary_schedule(text: str) -> list[dict[str, Any]]:
    """ "5,25@60,100@240" -> [{"percent": 5, "after_minutes": 0}, ...]; raises
    ValueError naming the step that is wrong."""
    steps: list[dict[str, Any]] = []
    for position, raw in enumerate(text.split(","), start=1):
        part = raw.strip()
        if not part:
            raise ValueError(f"step {position} is empty")
        percent_text, at, minutes_text = part.partition("@")
        try:
            percent = int(percent_text.strip())
        except ValueError:
            raise ValueError(
                f"step {position} ('{part}'): the percent must be a whole number"
            ) from None
        if not 0 <= percent <= 100:
            raise ValueError(f"step {position} ('{part}'): percent must be 0-100")
        minutes = 0.0
        if at and not minutes_text.strip():
            raise ValueError(f"step {position} ('{part}'): minutes are missing after @")
        if minutes_text.strip():
            try:
                minutes = float(minutes_text.strip())
            except ValueError:
                raise ValueError(
                    f"step {position} ('{part}'): minutes after @ must be a number"
                ) from None
            if not math.isfinite(minutes) or minutes < 0:
                raise ValueError(
                    f"step {position} ('{part}'): minutes must be 0 or more"
                )
        if steps and minutes <= steps[-1]["after_minutes"]:
            raise ValueError(
                f"step {position} ('{part}'): each step must start later than "
                "the one before"
            )
        steps.append(
            {
                "percent": percent,
                "after_minutes": int(minutes) if minutes.is_integer() else minutes,
            }
        )
    return steps


def format_canary_schedule(schedule: list[dict[str, Any]] | None) -> str:
    """The stored schedule back as the text the form takes."""
    parts = []
    for step in schedule or []:
        minutes = float(step.get("after_minutes", 0) or 0)
        shown = int(minutes) if minutes.is_integer() else minutes
        parts.append(f"{step['percent']}@{shown}" if minutes else str(step["percent"]))
    return ",".join(parts)


class ServiceErrorsMixin:
    """A service's refusal shown on the form, on the input it names if there is one."""

    def add_service_error(self, exc: ApplicationError) -> None:
        form: forms.Form = self  # type: ignore[assignment]
        if not exc.fields:
            form.add_error(None, exc.message)
            return
        for name in exc.fields:
            # The message says what is wrong; the field says where.
            form.add_error(name if name in form.fields else None, exc.message)


class GroupForm(ServiceErrorsMixin, forms.Form):
    """A group's settings; on an existing group the slug is fixed."""

    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=100,
        required=False,
        help_text="Part of the endpoint's URL. Empty: made from the name.",
    )
    strategy = forms.ChoiceField(choices=ModelGroup.Strategy.choices)
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    hypothesis = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the test should show, e.g. the challenger is as accurate.",
    )
    primary_metric = forms.CharField(
        max_length=50,
        required=False,
        help_text="The metric the decision rests on, e.g. accuracy.",
    )
    sticky = forms.BooleanField(
        required=False,
        label="Sticky routing",
        help_text="The same routing key always reaches the same member.",
    )
    fallback_to_champion = forms.BooleanField(
        required=False,
        label="Fall back to the champion",
        help_text="When a challenger fails, the champion answers instead.",
    )
    canary_schedule = forms.CharField(
        required=False, max_length=500, help_text=SCHEDULE_HELP
    )

    def __init__(
        self, *args: Any, group: ModelGroup | None = None, **kwargs: Any
    ) -> None:
        self.group = group
        if group is not None and "initial" not in kwargs:
            config = group.traffic_config or {}
            kwargs["initial"] = {
                **{name: getattr(group, name) for name in GROUP_FIELDS},
                "slug": group.slug,
                "sticky": bool(config.get("sticky")),
                "fallback_to_champion": bool(config.get("fallback_to_champion")),
                "canary_schedule": format_canary_schedule(
                    (config.get("canary") or {}).get("schedule")
                ),
            }
        super().__init__(*args, **kwargs)
        if group is not None:
            self.fields["slug"].disabled = True
            self.fields["slug"].help_text = "Fixed: clients call the group by it."

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = ModelGroup.objects.filter(name=name)
        if self.group is not None:
            others = others.exclude(pk=self.group.pk)
        if others.exists():
            raise forms.ValidationError("Another group has this name.")
        return name

    def clean_canary_schedule(self) -> list[dict[str, Any]]:
        text = self.cleaned_data.get("canary_schedule", "").strip()
        if not text:
            return []
        try:
            return parse_canary_schedule(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not a schedule: {exc}.") from exc

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        strategy = cleaned.get("strategy")
        schedule = cleaned.get("canary_schedule")
        if "canary_schedule" in cleaned:
            if strategy == ModelGroup.Strategy.CANARY and not schedule:
                self.add_error("canary_schedule", "A canary group needs a schedule.")
            elif schedule and strategy != ModelGroup.Strategy.CANARY:
                self.add_error(
                    "canary_schedule", "Only a canary group follows a schedule."
                )
        return cleaned

    def traffic_config(self) -> dict[str, Any]:
        """The stored traffic config with this form's inputs applied; keys the form
        does not manage (sample rates...) are kept."""
        current = dict(self.group.traffic_config or {}) if self.group else {}
        current.pop("canary", None)
        config = {
            **current,
            "sticky": self.cleaned_data["sticky"],
            "fallback_to_champion": self.cleaned_data["fallback_to_champion"],
        }
        if self.cleaned_data["canary_schedule"]:
            config["canary"] = {"schedule": self.cleaned_data["canary_schedule"]}
        return config

    def service_fields(self) -> dict[str, Any]:
        """Keyword arguments for group_create (with slug) or group_update (changes)."""
        fields = {name: self.cleaned_data[name] for name in GROUP_FIELDS}
        fields["traffic_config"] = self.traffic_config()
        if self.group is None:
            fields["slug"] = self.cleaned_data.get("slug") or ""
            return fields
        return {
            name: value
            for name, value in fields.items()
            if getattr(self.group, name) != value
        }


class MemberForm(forms.Form):
    """One member row. A row without a version is left out; a row that already has
    a member carries its version as a hidden input."""

    version = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    role = forms.ChoiceField(
        choices=Membership.Role.choices, initial=Membership.Role.CHALLENGER
    )
    weight = forms.IntegerField(min_value=0, max_value=100, initial=0)
    active = forms.BooleanField(required=False, initial=True)

    def __init__(
        self, *args: Any, choices: list[tuple[int, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.choices = choices if choices is not None else version_choices()
        version = self.fields["version"]
        version.choices = [("", "— choose a version —"), *self.choices]  # type: ignore[attr-defined]
        if self.initial.get("version"):
            version.widget = forms.HiddenInput()
        self.fields["weight"].widget.attrs["class"] = "weight"

    @property
    def version_label(self) -> str:
        version = self.initial.get("version")
        if version is None:
            return ""
        return dict(self.choices).get(int(version), f"version {version}")

    @property
    def is_existing(self) -> bool:
        return bool(self.initial.get("version"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            cleaned.get("version")
            and cleaned.get("role") == Membership.Role.SHADOW
            and cleaned.get("weight")
        ):
            self.add_error("weight", "A shadow takes no weight: set 0.")
        return cleaned


class BaseMemberFormSet(forms.BaseFormSet):
    """The member list as one unit: no version twice, at most one active champion.
    With `require_champion`, exactly one champion (the create flow)."""

    require_champion = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("form_kwargs", {})["choices"] = version_choices()
        super().__init__(*args, **kwargs)

    def kept_rows(self) -> list[dict[str, Any]]:
        rows = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if data.get("version") and not data.get("DELETE"):
                rows.append(data)
        return rows

    def clean(self) -> None:
        if any(self.errors):
            return
        rows = self.kept_rows()
        versions = [row["version"] for row in rows]
        doubled = sorted({v for v in versions if versions.count(v) > 1})
        if doubled:
            labels = dict(self.form_kwargs["choices"])
            names = ", ".join(labels.get(v, str(v)) for v in doubled)
            raise forms.ValidationError(f"A version can be in a group once: {names}.")
        champions = [
            r for r in rows if r["role"] == Membership.Role.CHAMPION and r["active"]
        ]
        if len(champions) > 1:
            raise forms.ValidationError(
                f"A group has one active champion, not {len(champions)}."
            )
        if self.require_champion and not champions:
            raise forms.ValidationError("Choose the champion's version.")

    def members(self) -> list[dict[str, Any]]:
        """The rows for members_set."""
        return [
            {
                "version_id": row["version"],
                "role": row["role"],
                "weight": row["weight"],
                "active": row["active"],
            }
            for row in self.kept_rows()
        ]

    def routed_total(self) -> int:
        """What the weights of active, routed rows add up to, as shown to the user:
        the submitted values if bound, the stored ones otherwise."""
        total = 0
        for form in self.forms:
            if form.is_bound and hasattr(form, "cleaned_data"):
                data = form.cleaned_data
            elif form.is_bound:
                continue
            else:
                data = {**{"active": True, "weight": 0}, **form.initial}
            if (
                data.get("version")
                and not data.get("DELETE")
                and data.get("active")
                and data.get("role") != Membership.Role.SHADOW
            ):
                total += int(data.get("weight") or 0)
        return total

    def add_service_error(self, exc: ApplicationError) -> None:
        """A refusal of members_set, e.g. weights that do not add up to 100."""
        self._non_form_errors = self.error_class([exc.message], error_class="nonform")


class BaseCreateMemberFormSet(BaseMemberFormSet):
    require_champion = True


MemberFormSet = formset_factory(
    MemberForm, formset=BaseMemberFormSet, extra=1, can_delete=True
)
CreateMemberFormSet = formset_factory(
    MemberForm, formset=BaseCreateMemberFormSet, extra=0, can_delete=False
)


CREATE_ROWS = [
    {"role": Membership.Role.CHAMPION, "weight": 100, "active": True},
    {"role": Membership.Role.CHALLENGER, "weight": 0, "active": True},
    {"role": Membership.Role.CHALLENGER, "weight": 0, "active": True},
    {"role": Membership.Role.SHADOW, "weight": 0, "active": True},
]


def members_formset(
    data: Any = None, *, group: ModelGroup | None = None
) -> BaseMemberFormSet:
    """The weights editor of a group (its members and one row to add a version), or
    the member rows of the create flow."""
    if group is None:
        return cast(
            BaseMemberFormSet,
            CreateMemberFormSet(data, prefix="members", initial=CREATE_ROWS),
        )
    initial = [
        {
            "version": m.version_id,
            "role": m.role,
            "weight": m.weight,
            "active": m.active,
        }
        for m in members_in_order(group)
    ]
    return cast(
        BaseMemberFormSet, MemberFormSet(data, prefix="members", initial=initial)
    )


class TryForm(forms.Form):
    inputs = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='One row {"feature": value}, a list of rows, or for LLM groups '
        '{"prompt": "..."}.',
    )
    routing_key = forms.CharField(
        max_length=200,
        required=False,
        help_text="Optional: with sticky routing, the same key reaches the same member.",
    )

    def clean_inputs(self) -> Any:
        text = self.cleaned_data["inputs"]
        if len(text.encode()) > settings.PREDICT_MAX_BODY_BYTES:
            raise forms.ValidationError(
                f"At most {settings.PREDICT_MAX_BODY_BYTES} bytes."
            )
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from exc
        if not isinstance(value, dict | list):
            raise forms.ValidationError("Expected an object or a list of objects.")
        return value


def example_inputs(group: ModelGroup) -> str:
    """A starting point for "Try it": the champion's features (with 0), or a prompt."""
    members = [m for m in members_in_order(group) if m.active]
    champion = next((m for m in members if m.role == "champion"), None)
    member = champion or (members[0] if members else None)
    if member is None:
        return "{}"
    version = member.version
    if version.provider_id is not None:
        return json.dumps({"prompt": "Hello!"})
    features = {
        f["name"]: 0 for f in (version.input_schema or []) if isinstance(f, dict)
    }
    return json.dumps(features, indent=1)
