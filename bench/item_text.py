"""Item texts: an item template rendered over the items table, and the interface that turns
texts into embeddings (``metrics.item_embeddings``, the ``ild_emb`` metric).

Rendering is plain string work and lives here, shared by the harness and the text-based
models: ``render_item_texts(items, n_items, "{title} ({year}). Genres: {genres}.")`` gives one
text per item index. Encoding needs a neural stack (transformers), which ``bench`` never
imports: a model package provides an ``ItemEncoder`` and registers it by name, the way it
registers models. A family package's ``__init__`` (found through the ``bench.model_packages``
entry point, see ``bench.models.registry``) may hold ``ITEM_ENCODERS = {"hf":
"module:Class"}``; ``register_encoder`` adds one at run time. ``encoder(name)`` imports the
class only when it is asked for.
"""

from __future__ import annotations

import importlib
import string
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from bench.errors import ConfigError, did_you_mean, unknown

__all__ = [
    "DEFAULT_ENCODER",
    "ELLIPSIS",
    "ItemEncoder",
    "blank_item_text",
    "check_template",
    "check_template_columns",
    "encoder",
    "register_encoder",
    "render_item_texts",
    "truncate_field",
]

#: the encoder ``metrics.item_embeddings`` uses: a local Hugging Face encoder folder
DEFAULT_ENCODER = "hf"
ELLIPSIS = "\u2026"  # the one character that marks a truncated field

_EXTRA: dict[str, str] = {}


class ItemEncoder(Protocol):
    """Turns item texts into embeddings with an encoder stored in a local folder."""

    def default_path(self) -> str:
        """The encoder folder used when the config names none (``encoder: ''``)."""
        ...

    def embed(
        self, texts: list[str], path: str, cache_dir: Path, *, template: str, progress: bool
    ) -> np.ndarray:
        """(len(texts), dim) float32 unit-norm embeddings of ``texts`` with the encoder in
        ``path``. ``template`` names the texts' recipe; an encoder may cache under
        ``cache_dir`` keyed by its files, ``template`` and the texts."""
        ...


# ---------------------------------------------------------------------------------------------
# rendering


def check_template(template: str, where: str) -> list[str]:
    """Field names of an item template; only plain ``{name}`` fields are allowed."""
    fields = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid template {template!r}: {exc}") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ConfigError(
                f"{where}: template field {{{name}}} is not allowed: use plain {{column}} names"
            )
        fields.append(name)
    return fields


def check_template_columns(template: str, items: pl.DataFrame, where: str, param: str) -> None:
    """Every field of an item template is a column of the items table: a typo (``{titel}``)
    would otherwise render every item's text empty. One-line ConfigError naming the field, a
    did-you-mean, the columns and the parameter to fix."""
    columns = [c for c in items.columns if c != "item_idx"]
    for name in check_template(template, where):
        if name not in columns:
            available = ", ".join(columns) or "none (the dataset has no item side information)"
            raise ConfigError(
                f"{where}: template field {{{name}}} is not a column of the items table"
                f"{did_you_mean(name, columns)}; available columns: {available}; fix {param} "
                f"(now {template!r})"
            )


def truncate_field(text: str, max_chars: int) -> str:
    """The item-template truncation rule (``max_field_chars``, docs/llm.md): whitespace runs
    become one space; a value still longer than ``max_chars`` keeps its first ``max_chars - 1``
    characters, cut back to the last space among them when that space lies past their middle
    (a word boundary), loses trailing spaces and ``,;:-``, and ends with "\u2026", so it is at
    most ``max_chars`` characters long. ``max_chars`` 0 keeps every value whole."""
    if max_chars <= 0:
        return text
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    space = head.rfind(" ")
    if space > (max_chars - 1) // 2:
        head = head[:space]
    return head.rstrip(" ,;:-") + ELLIPSIS


def _render_value(value: Any, max_chars: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, list | tuple | pl.Series):
        return truncate_field(", ".join(str(v) for v in value if v is not None), max_chars)
    return truncate_field(str(value), max_chars)


def blank_item_text(template: str) -> str:
    """The text of an item without side information (every field renders as '')."""
    fields = check_template(template, "item template")
    return " ".join(template.format(**{f: "" for f in fields}).split())


def render_item_texts(
    items: pl.DataFrame,
    n_items: int,
    template: str,
    *,
    strict: tuple[str, str] | None = None,
    max_field_chars: int = 0,
) -> list[str]:
    """One text per item index; null fields render as ''. A field absent from ``items``
    renders as '' too, unless ``strict`` = (where, param): then it is the one-line ConfigError
    of ``check_template_columns`` (a typo must not render every item empty). Each field's value
    is cut by ``truncate_field`` to ``max_field_chars`` characters (0: whole)."""
    if strict is not None:
        check_template_columns(template, items, *strict)
    fields = check_template(template, "item template")
    texts = [blank_item_text(template)] * n_items
    if "item_idx" not in items.columns:
        return texts
    cols = {f: items[f].to_list() if f in items.columns else None for f in set(fields)}
    idx = items["item_idx"].to_list()
    for row, i in enumerate(idx):
        if i is None or not 0 <= i < n_items:
            continue
        values = {
            f: _render_value(c[row], max_field_chars) if c is not None else ""
            for f, c in cols.items()
        }
        texts[i] = " ".join(template.format(**values).split())
    return texts


# ---------------------------------------------------------------------------------------------
# encoders


def _registered() -> dict[str, str]:
    """Every encoder name -> ``"module:Class"``: the family packages' ``ITEM_ENCODERS``, then
    ``register_encoder``'s; a name registered twice is an error."""
    from bench.models.registry import model_packages

    table: dict[str, str] = {}
    tables = [importlib.import_module(p).__dict__.get("ITEM_ENCODERS") for p in model_packages()]
    for entries in [*(t for t in tables if isinstance(t, dict)), _EXTRA]:
        for name, target in entries.items():
            if name in table and table[name] != target:
                raise ConfigError(
                    f"item encoder name '{name}' is registered twice ({table[name]}, {target})"
                )
            table[name] = target
    return table


def register_encoder(name: str, target: str | type) -> None:
    """Register an ``ItemEncoder`` class (or a ``"module:Class"`` string) under ``name``."""
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    if name in _registered():
        raise ConfigError(f"item encoder name '{name}' is already registered")
    _EXTRA[name] = target


def encoder(name: str = DEFAULT_ENCODER) -> ItemEncoder:
    """A new instance of the item encoder registered as ``name``."""
    table = _registered()
    if name not in table:
        if not table:
            raise ConfigError(
                f"no item encoder is registered (item encoder '{name}' is needed by "
                "metrics.item_embeddings): install the package that provides it, or set "
                "metrics.item_embeddings=null"
            )
        raise unknown("item encoder", name, table)
    module, _, attr = table[name].partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj()
