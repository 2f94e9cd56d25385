"""llm-embed: zero-shot, ID-free recommendation from pretrained text embeddings of items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.llm.common import (
    DEFAULT_ITEM_TEMPLATE,
    check_max_field_chars,
    check_model_folder,
    count_safetensors_params,
    default_encoder_path,
    hash_model_dir,
)
from baselines.llm.encoder import embed_items
from bench.errors import ConfigError
from bench.item_text import check_template, render_item_texts
from bench.models.base import FitContext, History, ModelData, ModelReport, Recommender


@dataclass(frozen=True)
class EmbedConfig:
    """Parameters of ``llm-embed`` (``conf/model/llm-embed.yaml``)."""

    encoder: str = ""  # local HF encoder folder; '' = the bundled all-MiniLM-L6-v2
    template: str = DEFAULT_ITEM_TEMPLATE  # item text; {column} of items.parquet, missing = ''
    max_field_chars: int = 300  # each template field cut to this many characters (0 = whole)
    decay: float = 0.9  # weight of the j-th most recent history item is decay**j
    max_history: int = 50  # only the most recent items enter the user profile (0 = all)
    #: weight of a popularity prior log(1+pop)/log(1+max pop) added to the cosine (train
    #: counts, no learned IDs); 0 = no interaction statistic enters the score. ``llm-embed-pop``
    #: is the registered hybrid with pop_weight 1.
    pop_weight: float = 0.0
    #: zero-shot text prior: a query (e.g. "a popular movie") encoded by the same encoder and
    #: added, times ``prior_weight``, to the unit-norm history profile before the cosine. It uses
    #: the encoder's own knowledge of the items (no interaction data); a user without history is
    #: ranked by the query alone. '' / 0 = off (see docs/llm.md for how the ml-100k default was
    #: chosen on the validation split).
    prior_query: str = ""
    prior_weight: float = 0.0
    batch_size: int = 64


def user_profiles(
    emb: np.ndarray, sequences: list[np.ndarray], users: np.ndarray, decay: float, max_hist: int
) -> np.ndarray:
    """Recency-weighted mean of history embeddings, L2-normalised; NaN rows for empty history."""
    prof = np.full((len(users), emb.shape[1]), np.nan, dtype=np.float64)
    for row, u in enumerate(users):
        seq = sequences[int(u)]
        if max_hist > 0:
            seq = seq[-max_hist:]
        if len(seq) == 0:
            continue
        w = decay ** np.arange(len(seq) - 1, -1, -1, dtype=np.float64)
        v = w @ emb[seq].astype(np.float64)
        norm = np.linalg.norm(v)
        prof[row] = v / norm if norm > 0 else v
    return prof


class LLMEmbed(Recommender):
    """Cosine similarity between an item's text embedding and the user's history profile.

    Item text comes from side information through ``template``; the encoder is a local
    sentence encoder (mean pooling + L2 normalisation). Nothing is learned from interactions:
    the model is zero-shot and ID-free. Optional priors: a text query encoded by the same encoder
    (``prior_query``/``prior_weight``, still no interaction data) and a popularity prior from
    train counts (``pop_weight``, the ``llm-embed-pop`` hybrid). Users with an empty history get
    the priors alone, or NaN (cannot score) if both are off.
    """

    Config = EmbedConfig
    name = "llm-embed"

    def __init__(self, config: EmbedConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        check_template(cfg.template, "llm-embed")
        check_max_field_chars(cfg.max_field_chars, "llm-embed")
        if not 0.0 < cfg.decay <= 1.0:
            raise ConfigError(f"llm-embed: decay must be in (0, 1], got {cfg.decay}")
        if cfg.pop_weight < 0:
            raise ConfigError(f"llm-embed: pop_weight must be >= 0, got {cfg.pop_weight}")
        if cfg.prior_weight < 0:
            raise ConfigError(f"llm-embed: prior_weight must be >= 0, got {cfg.prior_weight}")
        if cfg.prior_weight > 0 and not cfg.prior_query.strip():
            raise ConfigError(
                "llm-embed: prior_weight > 0 needs a prior_query text "
                "(set model.params.prior_query='...' or prior_weight=0)"
            )
        if cfg.max_history < 0 or cfg.batch_size < 1:
            raise ConfigError("llm-embed: max_history must be >= 0 and batch_size >= 1")
        # the encoder folder is checked now, not when fit() reads it
        check_model_folder(cfg.encoder or default_encoder_path(), self.name, "encoder")
        self.item_emb: np.ndarray | None = None
        self.encode_stats = None
        self._n_encoder_params = 0
        self.prior = np.zeros(0)
        self.query_emb: np.ndarray | None = None

    def report(self) -> ModelReport:
        """The encoder's content sha256; after fit, whether the item embeddings came from the
        cache and how fast items were encoded."""
        path = self.config.encoder or default_encoder_path()
        return ModelReport(
            metrics=self._encode_metrics(), provenance={"encoder_sha256": hash_model_dir(path)}
        )

    def fit(self, data: ModelData, ctx: FitContext) -> None:
        cfg = self.config
        path = cfg.encoder or default_encoder_path()
        texts = render_item_texts(
            data.items,
            data.n_items,
            cfg.template,
            strict=(self.name, "model.params.template"),
            max_field_chars=cfg.max_field_chars,
        )
        self.item_emb, self.encode_stats = embed_items(
            texts,
            path,
            ctx.cache_dir,
            template=cfg.template,
            batch_size=cfg.batch_size,
            progress=ctx.progress,
        )
        self._n_encoder_params = count_safetensors_params(path)
        if cfg.prior_weight > 0:
            q, _ = embed_items(
                [cfg.prior_query],
                path,
                ctx.cache_dir,
                template="prior-query",
                batch_size=1,
                progress=False,
            )
            self.query_emb = q[0].astype(np.float64)
        pop = np.asarray(data.train_history.matrix.sum(axis=0), dtype=np.float64).ravel()
        self.prior = np.log1p(pop) / max(np.log1p(pop.max(initial=0.0)), 1e-12)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        if self.item_emb is None:
            raise RuntimeError("llm-embed: score() called before fit()")
        users = np.asarray(users, dtype=np.int64)
        prof = user_profiles(
            self.item_emb, history.sequences, users, self.config.decay, self.config.max_history
        )
        if self.query_emb is not None:
            # empty history: a zero profile, so the query alone ranks
            prof = np.nan_to_num(prof, nan=0.0) + self.config.prior_weight * self.query_emb
        scores = prof @ self.item_emb.T.astype(np.float64)
        if self.config.pop_weight > 0:
            cold = np.isnan(scores[:, 0]) if scores.shape[1] else np.zeros(len(users), bool)
            scores[cold] = 0.0  # no history: the prior alone ranks
            scores += self.config.pop_weight * self.prior
        return scores

    def n_parameters(self) -> int:
        """Parameters of the (frozen, pretrained) encoder; nothing is trained."""
        return self._n_encoder_params

    def _encode_metrics(self) -> dict[str, float]:
        st = self.encode_stats
        if st is None:
            return {}
        out = {"llm_embed_cache_hit": float(st.cache_hit)}
        if st.n_encoded and st.seconds > 0:
            out["llm_embed_items_per_s"] = st.n_encoded / st.seconds
        return out
