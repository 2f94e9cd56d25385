"""llm-seq: a generative sequential recommender with an LLM architecture over item tokens.

A small decoder-only transformer (transformers ``LlamaConfig`` or ``GPT2Config``, random init)
whose vocabulary is the catalog (token ``i + 1`` = item ``i``; ``0`` = padding), trained from
scratch with next-item cross-entropy on the train sequences. ``init=text`` initialises the item
embeddings from the text encoder's item embeddings, projected to the hidden size by PCA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.llm.common import (
    DEFAULT_ITEM_TEMPLATE,
    check_max_field_chars,
    check_model_folder,
    default_encoder_path,
    hash_model_dir,
)
from bench.errors import ConfigError
from bench.item_text import check_template, render_item_texts
from bench.models.base import FitContext, History, ModelData, ModelReport, Recommender


@dataclass(frozen=True)
class SeqConfig:
    """Parameters of ``llm-seq`` (``conf/model/llm-seq.yaml``). CPU-sized defaults."""

    arch: str = "llama"  # llama | gpt2
    hidden_size: int = 32
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50  # last items of a history fed to the model
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 2  # epochs without improvement of ctx.early_stopping_metric
    init: str = "random"  # random | text (hybrid: item embeddings from the text encoder)
    encoder: str = ""  # init=text: local encoder folder ('' = bundled all-MiniLM-L6-v2)
    template: str = DEFAULT_ITEM_TEMPLATE  # init=text: item text template
    max_field_chars: int = 300  # init=text: each template field cut to this many chars (0 = whole)
    max_train_seconds: float = 0.0  # stop after the epoch that crosses it (0 = no limit)


def windows(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of shape (n, max_len), right-padded with 0; tokens are item + 1.

    Each sequence is cut from its end into chunks of ``max_len + 1`` items (overlapping by
    one) so every item after the first is a target exactly once.
    """
    xs, ys = [], []
    for seq in seqs:
        tok = np.asarray(seq, dtype=np.int64) + 1
        end = len(tok)
        while end >= 2:
            start = max(0, end - max_len - 1)
            chunk = tok[start:end]
            x = np.zeros(max_len, np.int64)
            y = np.zeros(max_len, np.int64)
            x[: len(chunk) - 1] = chunk[:-1]
            y[: len(chunk) - 1] = chunk[1:]
            xs.append(x)
            ys.append(y)
            end = start + 1
    if not xs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(xs), np.stack(ys)


class LLMSeq(Recommender):
    """Next-item prediction with a tiny Llama/GPT-2 trained from scratch on item sequences."""

    Config = SeqConfig
    name = "llm-seq"

    def __init__(self, config: SeqConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.arch not in ("llama", "gpt2") or cfg.init not in ("random", "text"):
            raise ConfigError(
                f"llm-seq: arch must be llama|gpt2 and init random|text, got {cfg.arch!r}, "
                f"{cfg.init!r}"
            )
        if min(cfg.hidden_size, cfg.n_layers, cfg.n_heads, cfg.max_len, cfg.batch_size) < 1:
            raise ConfigError("llm-seq: sizes must be >= 1")
        if cfg.hidden_size % cfg.n_heads:
            raise ConfigError("llm-seq: hidden_size must be divisible by n_heads")
        check_template(cfg.template, "llm-seq")
        check_max_field_chars(cfg.max_field_chars, "llm-seq")
        if cfg.init == "text":  # the encoder folder is checked now, not when fit() reads it
            check_model_folder(cfg.encoder or default_encoder_path(), "llm-seq", "encoder")
        self.model = None
        self.history_: list[dict[str, float]] = []
        self.best_epoch = -1  # 0-based epoch early stopping kept (-1: no validation)

    def report(self) -> ModelReport:
        """The text encoder's content sha256 (``init=text``); after training, the epochs
        trained and the last epoch's loss."""
        provenance = {}
        if self.config.init == "text":
            path = self.config.encoder or default_encoder_path()
            provenance["encoder_sha256"] = hash_model_dir(path)
        metrics = {}
        if self.history_:
            metrics = {
                "train_epochs": float(len(self.history_)),
                "train_loss": float(self.history_[-1]["loss"]),
            }
        return ModelReport(metrics=metrics, provenance=provenance)

    # ------------------------------------------------------------------ model
    def _build(self, n_items: int):
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        cfg = self.config
        vocab = n_items + 1
        if cfg.arch == "llama":
            conf = LlamaConfig(
                vocab_size=vocab,
                hidden_size=cfg.hidden_size,
                intermediate_size=cfg.hidden_size * 2,
                num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_heads,
                max_position_embeddings=cfg.max_len,
                attention_dropout=cfg.dropout,
                pad_token_id=0,
                bos_token_id=None,
                eos_token_id=None,
                tie_word_embeddings=True,
            )
            model = LlamaForCausalLM(conf)
        else:
            conf = GPT2Config(
                vocab_size=vocab,
                n_embd=cfg.hidden_size,
                n_layer=cfg.n_layers,
                n_head=cfg.n_heads,
                n_positions=cfg.max_len,
                resid_pdrop=cfg.dropout,
                embd_pdrop=cfg.dropout,
                attn_pdrop=cfg.dropout,
                pad_token_id=0,
                bos_token_id=None,
                eos_token_id=None,
                tie_word_embeddings=True,
            )
            model = GPT2LMHeadModel(conf)
        model.config.use_cache = False
        return model

    def _text_init(self, model, data: ModelData, ctx: FitContext) -> None:
        import torch

        from baselines.llm.encoder import embed_items

        texts = render_item_texts(
            data.items,
            data.n_items,
            self.config.template,
            strict=("llm-seq", "model.params.template"),
            max_field_chars=self.config.max_field_chars,
        )
        emb, _ = embed_items(
            texts,
            self.config.encoder or default_encoder_path(),
            ctx.cache_dir,
            template=self.config.template,
            progress=ctx.progress,
        )
        proj = pca_project(emb.astype(np.float64), self.config.hidden_size)
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            std = float(weight[1:].std())
            proj = proj / max(proj.std(), 1e-12) * std
            weight[1:] = torch.as_tensor(proj, dtype=weight.dtype)

    # ------------------------------------------------------------------ fit
    def fit(self, data: ModelData, ctx: FitContext) -> None:
        import torch

        cfg = self.config
        x, y = windows(data.train_history.sequences, cfg.max_len)
        if len(x) == 0:
            raise ConfigError("llm-seq: no train sequence has 2 or more items")
        seed = int(ctx.torch_generator(stream=3).initial_seed())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._build(data.n_items)
            if cfg.init == "text":
                self._text_init(model, data, ctx)
            self.model = model
            self._train(x, y, ctx)

    def _train(self, x: np.ndarray, y: np.ndarray, ctx: FitContext) -> None:
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        model = self.model
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = ctx.rng(stream=3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        out_w = model.get_output_embeddings().weight
        best, best_state, bad = -np.inf, None, 0
        self.best_epoch = -1
        t_start = time.perf_counter()
        for epoch in tqdm(range(cfg.epochs), desc="llm-seq", disable=not ctx.progress):
            model.train()
            perm = torch.from_numpy(rng.permutation(len(x)))
            total = 0.0
            for s in range(0, len(x), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                xb, yb = xt[idx], yt[idx]
                # logits only where there is a target: padding costs no output-layer work
                hidden = model.base_model(input_ids=xb, attention_mask=(xb > 0).long())
                keep = yb > 0
                logits = hidden.last_hidden_state[keep] @ out_w.T
                loss = torch.nn.functional.cross_entropy(logits, yb[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            record = {"epoch": epoch, "loss": total / len(x)}
            if ctx.validate is not None:
                metric = float(ctx.validate(self)[ctx.early_stopping_metric])
                record[ctx.early_stopping_metric] = metric
                if metric > best:
                    best, bad, self.best_epoch = metric, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
            self.history_.append(record)
            if ctx.validate is not None and bad >= cfg.patience:
                break
            if cfg.max_train_seconds and time.perf_counter() - t_start > cfg.max_train_seconds:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    # ------------------------------------------------------------------ score
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        import torch

        if self.model is None:
            raise RuntimeError("llm-seq: score() called before fit()")
        users = np.asarray(users, dtype=np.int64)
        L = self.config.max_len
        x = np.zeros((len(users), L), np.int64)
        lengths = np.zeros(len(users), np.int64)
        for r, u in enumerate(users.tolist()):
            seq = history.sequences[u][-L:] + 1
            x[r, : len(seq)] = seq
            lengths[r] = len(seq)
        out = np.full((len(users), self.model.config.vocab_size - 1), np.nan)
        has = lengths > 0
        if has.any():
            was_training = self.model.training
            self.model.eval()
            xt = torch.from_numpy(x[has])
            with torch.inference_mode():
                logits = self.model(input_ids=xt, attention_mask=(xt > 0).long()).logits
            last = torch.from_numpy(lengths[has] - 1)
            rows = logits[torch.arange(len(last)), last, 1:]
            out[has] = rows.double().numpy()
            self.model.train(was_training)
        return out

    def n_parameters(self) -> int:
        return 0 if self.model is None else int(sum(p.numel() for p in self.model.parameters()))

    def refit_params(self) -> dict[str, Any]:
        """The refit on train+valid trains for the epochs that early stopping chose."""
        return {"epochs": self.best_epoch + 1} if self.best_epoch >= 0 else {}


def pca_project(emb: np.ndarray, dim: int) -> np.ndarray:
    """Rows of ``emb`` on its top-``dim`` principal axes (zero-padded if dim > rank)."""
    centered = emb - emb.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    out = np.zeros((len(emb), dim))
    k = min(dim, vt.shape[0])
    out[:, :k] = centered @ vt[:k].T
    return out
