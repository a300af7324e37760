"""The JSON Schema of the `deepspeed` section, assembled from the installed DeepSpeed's own models.

Sections DeepSpeed validates with pydantic get that model's schema (inlined); sections it reads as plain
dicts list the keys its parser looks up; the top level allows what DeepSpeed allows.
"""

from __future__ import annotations

import ast
import contextlib
import enum
import inspect
import textwrap
import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from dsdet.config.ds_keys import known_keys, section_model


@cache
def section_schemas() -> dict[str, dict[str, Any]]:
    """Top-level key -> JSON Schema of what DeepSpeed accepts there."""
    known = known_keys()
    schemas: dict[str, dict[str, Any]] = {}
    for key in sorted(known[""]):
        model = section_model(key)
        if model is not None:
            schemas[key] = {
                **model_schema(model),
                "description": f"Validated by DeepSpeed's {model.__name__}.",
            }
        elif key in known:
            schemas[key] = {
                "type": "object",
                "properties": {name: {} for name in sorted(known[key])},
                "description": "Read by DeepSpeed as a plain mapping; other keys are ignored.",
            }
        else:
            schemas[key] = {}
    return schemas


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON Schema of one of DeepSpeed's models: its keys (aliases too), types, defaults and deprecations.

    Written from the fields, because pydantic's generator cannot serialize DeepSpeed's deprecation hooks."""
    properties: dict[str, Any] = {}
    docs = attribute_docs(model)
    for name, field in model.model_fields.items():
        node = _type_schema(field.annotation)
        if docs.get(name):
            node["description"] = docs[name]
        default = field.get_default(call_default_factory=True) if not field.is_required() else None
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        with contextlib.suppress(PydanticSerializationError):
            if default is not None:
                node["default"] = to_jsonable_python(default)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("deprecated"):
            node["deprecated"] = True
            if extra.get("new_param"):
                node["description"] = f"Deprecated: use {extra['new_param']}."
        properties[name] = node
        if field.alias and field.alias != name:
            properties[field.alias] = {**node, "description": f"Another name of {name}."}
    return {"type": "object", "properties": properties, "additionalProperties": False}


@cache
def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the first paragraph of the docstring written under it in DeepSpeed's source, one line."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                paragraph = inspect.cleandoc(after.value.value).split("\n\n")[0]
                docs[node.target.id] = " ".join(paragraph.split())
    return docs


def _type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON type of an annotation, as far as JSON can say it (nested models become objects)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_schema(args[0])
    if origin in (Union, types.UnionType):
        members = [_type_schema(arg) for arg in args if arg is not type(None)]
        return members[0] if len(members) == 1 else {"anyOf": members} if all(members) else {}
    if origin is Literal:
        return {"enum": list(args)}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return model_schema(annotation)
        if issubclass(annotation, enum.Enum):
            return {"enum": [member.value for member in annotation]}
        for python, json_type in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
            if issubclass(annotation, python):
                return {"type": json_type}
    if origin in (list, tuple, set):
        return {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    return {}


def deepspeed_json_schema(schema: dict[str, Any]) -> None:
    """pydantic's json_schema_extra hook: the DeepSpeed sections as properties of the `deepspeed` object."""
    schema.pop("additionalProperties", None)
    schema["type"] = "object"
    schema["properties"] = section_schemas()
    schema["additionalProperties"] = True
    schema["description"] = (
        "A DeepSpeed JSON config with DeepSpeed's own key names, validated by the installed DeepSpeed; "
        "'auto' values are filled from the experiment."
    )
