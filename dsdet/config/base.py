"""Building blocks shared by every config model: the strict base class, "auto", numbers and tagged unions."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag

AUTO = "auto"
Auto = Literal["auto"]


class StrictModel(BaseModel):
    """A config section: unknown keys, NaN and infinity are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {str(value).lower()}")
    return value


# Numbers that refuse true/false (pydantic would read `lr: yes` as 1.0).
Int = Annotated[int, BeforeValidator(_reject_bool)]
Float = Annotated[float, BeforeValidator(_reject_bool)]


class TagBy:
    """A union discriminator: the member whose tag equals the value of `key`, compared case-insensitively."""

    def __init__(self, key: str, tags: list[str]) -> None:
        self.key = key
        self.tags = tags
        self.__name__ = f"tag_by_{key}"  # pydantic names the validator after it
        self._by_lower = {tag.lower(): tag for tag in tags}

    def __call__(self, value: Any) -> str | None:
        raw = value.get(self.key) if isinstance(value, dict) else getattr(value, self.key, None)
        return self._by_lower.get(raw.lower()) if isinstance(raw, str) else None


def tagged_union(key: str, members: dict[str, type[BaseModel]]) -> Any:
    """A union of models told apart by the value of `key` (e.g. an optimizer's `type`)."""
    tagged = tuple(Annotated[model, Tag(tag)] for tag, model in members.items())
    any_member = Union[tagged]  # noqa: UP007 - a union built from a tuple has no `|` spelling
    chooser = Discriminator(
        TagBy(key, list(members)), custom_error_type="unknown_tag", custom_error_message=key
    )
    return Annotated[any_member, chooser]
