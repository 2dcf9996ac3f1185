"""`/docs`: the OpenAPI document as one self-contained HTML page (no script, no CDN: it works offline).

Each route with its summary, its request body's fields (type, default, description) and its answers; the full
document is one link away (`/openapi.json`).
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
         "h2{margin-top:2rem;font-size:1.1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}"
         "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;"
         "vertical-align:top}.m{font-weight:600;color:#06c}")


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        default = "required" if name in required else html.escape(json.dumps(prop.get("default")))
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(_type(prop))}</td>"
                    f"<td>{default}</td><td>{html.escape(prop.get('description', ''))}</td></tr>")
    return ("<table><tr><th>field</th><th>type</th><th>default</th><th></th></tr>" + "".join(rows) + "</table>"
            if rows else "")


def docs_page(document: dict[str, Any]) -> str:
    """The page for `document` (an OpenAPI 3 dict)."""
    schemas = document.get("components", {}).get("schemas", {})
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(document['info']['title'])} API</title>",
             f"<style>{STYLE}</style><h1>{html.escape(document['info']['title'])} "
             f"{html.escape(document['info']['version'])}</h1>",
             f"<p>{html.escape(document['info'].get('description', ''))}</p>",
             "<p>The whole document: <a href=/openapi.json>/openapi.json</a>.</p>"]
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(f"<h2><span class=m>{method.upper()}</span> <code>{html.escape(path)}</code></h2>")
            if operation.get("summary"):
                parts.append(f"<p>{html.escape(operation['summary'])}</p>")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in body:
                parts.append(_fields(schemas.get(_type(body), {})))
            answers = ", ".join(f"{code} {html.escape(r.get('description', ''))}"
                                for code, r in operation.get("responses", {}).items())
            parts.append(f"<p>answers: {answers}</p>")
    return "".join(parts)
