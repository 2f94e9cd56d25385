"""Sentence embeddings of item texts with a local Hugging Face encoder, cached on disk.

Mean pooling over the attention mask followed by L2 normalisation: what sentence-transformers
does for all-MiniLM-L6-v2 (modules Transformer -> Pooling(mean) -> Normalize).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.llm.common import (
    EMBED_RECIPE,
    atomic_write_bytes,
    default_encoder_path,
    hash_model_dir,
    hf_progress_bars,
    sha256_json,
)

log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    cache_hit: bool = False
    n_encoded: int = 0
    seconds: float = 0.0
    path: Path | None = None


def _max_length(path: Path, default: int = 256) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.exists():
        try:
            return int(json.loads(cfg.read_text()).get("max_seq_length", default))
        except (ValueError, TypeError):
            return default
    return default


class TextEncoder:
    """A local encoder (``AutoModel`` + ``AutoTokenizer``), never downloading anything."""

    def __init__(
        self, path: str | Path, max_length: int | None = None, progress: bool | None = None
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        hf_progress_bars(progress)

        self.path = Path(path)
        self.max_length = max_length or _max_length(self.path)
        kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), **kw)
        self.model = AutoModel.from_pretrained(str(self.path), use_safetensors=True, **kw)
        self.model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, unit L2 norm; batches sorted by length to cut padding."""
        import torch
        from tqdm.auto import tqdm

        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for s in tqdm(starts, desc="encode items", disable=not progress, unit="batch"):
            idx = order[s : s + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
            out[idx] = pooled.numpy()
        return out


def embed_items(
    texts: list[str],
    encoder_path: str | Path,
    cache_dir: Path,
    *,
    template: str,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, EncodeStats]:
    """Item embeddings, read from ``cache_dir/llm-embed/<key>.safetensors`` when present.

    The key hashes the encoder files, the embedding recipe, the template and every rendered
    text, so any change to one of them re-encodes. The file is safetensors (no pickle).
    """
    import time

    from safetensors.numpy import load_file, save

    key = sha256_json(
        {
            "encoder": hash_model_dir(encoder_path),
            "recipe": EMBED_RECIPE,
            "template": template,
            "texts": sha256_json(texts),
        }
    )
    path = Path(cache_dir) / "llm-embed" / f"{key}.safetensors"
    stats = EncodeStats(path=path)
    if path.exists():
        try:
            emb = load_file(str(path))["embeddings"]
            if emb.shape[0] == len(texts):
                stats.cache_hit = True
                return emb, stats
        except Exception as exc:  # a torn or foreign file: re-encode and overwrite
            log.warning("ignoring unreadable embedding cache %s: %s", path, exc)
    t0 = time.perf_counter()
    emb = TextEncoder(encoder_path, progress=progress).encode(
        texts, batch_size=batch_size, progress=progress
    )
    stats.seconds = time.perf_counter() - t0
    stats.n_encoded = len(texts)
    atomic_write_bytes(path, save({"embeddings": emb}, metadata={"key": key}))
    return emb, stats


class HFItemEncoder:
    """The harness's ``bench.item_text.ItemEncoder`` named ``hf`` (``ITEM_ENCODERS`` in
    ``baselines.llm``): ``embed_items`` with a local Hugging Face encoder folder, the bundled
    all-MiniLM-L6-v2 by default. Used for ``metrics.item_embeddings`` (``ild_emb``)."""

    def default_path(self) -> str:
        return default_encoder_path()

    def embed(
        self, texts: list[str], path: str, cache_dir: Path, *, template: str, progress: bool
    ) -> np.ndarray:
        emb, _ = embed_items(texts, path, cache_dir, template=template, progress=progress)
        return emb
