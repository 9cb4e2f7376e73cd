"""JSON Schema of the whole format, for editors (yaml-language-server) and for tests.

Steps are the one place pydantic cannot describe alone: a step is the common keys plus one
executor key in short or long form, with that executor's options allowed beside it. Each
executor contributes one variant of that shape.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from .. import executors
from .model import CONNECTION_KINDS, Body, Check, Procedure, Step

SCHEMA_ID = "https://runproc.dev/schema/procedure-v1.json"


class _Generator(GenerateJsonSchema):
    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> dict[str, Any]:
        return {}


def _model_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, schema_generator=_Generator,
                                     ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def json_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _model_schema(Procedure, defs)
    option_props: dict[str, dict[str, Any]] = {}
    for name in sorted(executors.known_names()):
        try:
            cls = executors.get_executor(name)
        except Exception:  # noqa: BLE001 - a broken plugin must not break the schema of the rest
            continue
        opts = _model_schema(cls.Options, defs)
        defs[f"{name}_options"] = opts
        option_props[name] = opts
    for body_model in (Body, Check, Step):
        common = defs[body_model.__name__]
        props = {k: v for k, v in common.get("properties", {}).items() if k != "action"}
        required = [r for r in common.get("required", []) if r != "action"]
        variants = []
        for name, opts in option_props.items():
            cls = executors.get_executor(name)
            main = opts.get("properties", {}).get(cls.main_option, {})
            # options may stand beside the executor key, except the main one (that is the
            # short form) and one named like the executor (shell's `shell:` option would be
            # the executor key itself, so it can only be given inside the mapping)
            beside = {k: v for k, v in opts.get("properties", {}).items()
                      if k not in props and k not in (cls.main_option, name)}
            if body_model is Step and "verify" in props:
                props["verify"] = {**props["verify"], "items": {"$ref": "#/$defs/Verification"}}
            variants.append({
                "type": "object",
                "title": f"{body_model.__name__.lower()} with {name}",
                "properties": {**props, name: {"anyOf": [main, {"$ref": f"#/$defs/{name}_options"}]}, **beside},
                "required": [*required, name],
                "additionalProperties": False,
            })
        defs[body_model.__name__] = {"anyOf": variants, "title": body_model.__name__,
                                     "description": (body_model.__doc__ or "").strip()}
        if body_model is Check:
            # under verify, a check may have no executor: its expect judges the step's own result
            own = {k: props[k] for k in ("name", "expect") if k in props}
            defs["Verification"] = {"anyOf": [{"$ref": "#/$defs/Check"}, {
                "type": "object", "title": "check of the step's own result", "properties": own,
                "required": ["expect"], "additionalProperties": False}], "title": "Verification"}
    conn_variants = []
    for kind, model in CONNECTION_KINDS.items():
        s = _model_schema(model, defs)
        main = s["properties"][model.main]
        beside = {k: v for k, v in s["properties"].items() if k != model.main}
        conn_variants.append({"type": "object", "properties": {kind: {"anyOf": [main, s]}, **beside},
                              "required": [kind], "additionalProperties": False})
    root["properties"]["connections"] = {"type": "object", "additionalProperties": {"anyOf": conn_variants}}
    root["$defs"] = defs
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    root["$id"] = SCHEMA_ID
    root["title"] = "runproc procedure"
    return root
