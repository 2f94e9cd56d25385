"""The single RecBole adapter: any RecBole general or sequential model under the harness protocol.

``fit`` writes the split as pre-split atomic files (:mod:`baselines.recbole.atomic`), builds
RecBole's dataset and train dataloader through its lower-level API, and trains with RecBole's own
trainer for the model (its ``fit`` loop, losses, samplers). The one change is validation: the
trainer's ``_valid_epoch`` asks the harness (``ctx.validate(self)``) instead of RecBole's
evaluator, so early stopping uses the harness's metric on ``valid`` ranked by the harness's
``topk``. The best weights are kept in memory and restored at the end.

``score`` returns the model's full-ranking scores in the harness's item index space; NaN for
items RecBole did not see in train. See ``docs/recbole.md``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from baselines.recbole import compat, params
from baselines.recbole.atomic import DATASET, AtomicFiles, write_atomic
from bench.errors import ConfigError
from bench.models.base import (
    FitContext,
    History,
    ModelData,
    ModelReport,
    Recommender,
    validate_params,
)

#: user x item pairs per ``predict`` call for models without ``full_sort_predict`` (NeuMF ...)
PAIRS_PER_CALL = 1 << 18
#: scores per ``full_sort_predict`` call (users per call = this // n_items)
SCORES_PER_CALL = 1 << 22


@dataclass(frozen=True)
class RecBoleConfig:
    """Harness-side settings; every other RecBole setting passes through ``recbole``.

    ``recbole`` holds ``(name, value)`` pairs validated against RecBole's defaults for the model
    (``recbole/properties/overall.yaml`` + ``properties/model/<Model>.yaml``).
    """

    model: str = ""
    epochs: int = 10
    eval_step: int = 1
    stopping_step: int = 3
    train_batch_size: int = 2048
    learning_rate: float = 0.001
    MAX_ITEM_LIST_LENGTH: int = 50
    threads: int = 1
    recbole: tuple[tuple[str, Any], ...] = ()

    def recbole_dict(self) -> dict[str, Any]:
        """The settings handed to RecBole's ``Config`` (harness fields + pass-through)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("model", "threads", "recbole")
        }
        out.update({k: _thaw(v) for k, v in self.recbole})
        return out


class RecBoleModel(Recommender):
    """Any RecBole general or sequential model, named by ``params.model`` (e.g. ``NGCF``)."""

    Config: ClassVar[type] = RecBoleConfig
    name: ClassVar[str] = "recbole"
    #: fixed RecBole model of a named subclass ("" = given by ``params.model``)
    recbole_model: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params_: Mapping[str, Any] | None, where: str = "") -> Recommender:
        """Validate harness fields into the Config and RecBole pass-through keys by name."""
        where = where or cls.name
        raw = dict(params_ or {})
        model = raw.pop("model", None)
        fixed = cls.recbole_model
        if fixed and model is not None and str(model).lower() != fixed.lower():
            raise ConfigError(
                f"model '{where}' always runs RecBole {cls.recbole_model}; use "
                f"model=recbole model.params.model={model} for another RecBole model"
            )
        if not (model or cls.recbole_model):
            raise ConfigError(
                f"model '{where}' needs model.params.model=<RecBole model name>, e.g. NGCF"
            )
        canonical = params.resolve_model(str(model or cls.recbole_model), where)
        fields = {f.name for f in dataclasses.fields(RecBoleConfig)} - {"model", "recbole"}
        mine = {k: v for k, v in raw.items() if k in fields}
        rest = {k: v for k, v in raw.items() if k not in fields}
        params.check_params(canonical, rest, where, frozenset(fields | {"model"}))
        frozen = tuple(sorted((k, _freeze(v)) for k, v in rest.items()))
        cfg = validate_params(RecBoleConfig, mine, where)
        return cls(dataclasses.replace(cfg, model=canonical, recbole=frozen))

    def __init__(self, config: RecBoleConfig | None = None) -> None:
        if config is None:
            config = self.from_params({}, self.name).config
        super().__init__(config)
        self.model: Any = None
        self.kind = params.model_kind(self.config.model)
        self.best_epoch = -1
        self.epochs_trained = 0
        self.valid_history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ fit
    def fit(self, data: ModelData, ctx: FitContext) -> None:
        """Train with RecBole's trainer; early stopping on the harness's ``valid`` metric."""
        compat.import_recbole()
        self.best_epoch, self.epochs_trained, self.valid_history = -1, 0, []
        with compat.recbole_session(), compat.seeded(ctx.seed, self.config.threads):
            config, dataset, train_data, valid_data, test_data = self.build(data, ctx)
            self._build_model(config, train_data)
            trainer = self._trainer(config, ctx)
            valid = _HARNESS_VALID if ctx.validate is not None else None
            try:
                trainer.fit(
                    train_data,
                    valid,
                    show_progress=False,
                    callback_fn=trainer.on_valid,
                    **compat.NO_CHECKPOINT,
                )
            finally:
                trainer.close()
            self.epochs_trained = trainer.epochs_done
            if trainer.best_state is not None:
                self.model.load_state_dict(trainer.best_state[0])
                self.model.load_other_parameter(trainer.best_state[1])
            self.trainer = trainer
        self.model.eval()

    def build(
        self,
        data: ModelData,
        ctx: FitContext,
        test: Any = None,
        evaluation: Mapping[str, Any] | None = None,
    ) -> tuple:
        """RecBole config, dataset and dataloaders for ``data`` (call inside a recbole_session).

        ``test`` (indexed frame) and ``evaluation`` (RecBole ``metrics``/``topk``/
        ``metric_decimal_place``) are only for the peer check against RecBole's own evaluator.
        """
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import init_seed

        folder = Path(ctx.workdir) / "recbole"
        files = write_atomic(
            data,
            folder,
            sequential=self.kind == "sequential",
            max_len=self.config.MAX_ITEM_LIST_LENGTH,
            test=test,
        )
        self.files: AtomicFiles = files
        config = Config(
            model=self.config.model,
            dataset=DATASET,
            config_dict={**self._config_dict(ctx, folder), **dict(evaluation or {})},
        )
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        self._maps(data, dataset)
        init_seed(config["seed"], config["reproducibility"])
        return config, dataset, train_data, valid_data, test_data

    def _config_dict(self, ctx: FitContext, folder: Path) -> dict[str, Any]:
        cfg = self.config.recbole_dict()
        sequential = self.kind == "sequential"
        fixed = {
            "data_path": str(folder),
            "benchmark_filename": ["train", "valid", "test"],
            "checkpoint_dir": str(folder / "saved"),
            "seed": int(ctx.seed),
            "reproducibility": True,
            "show_progress": False,
            "state": "ERROR",
            "use_gpu": str(ctx.device).startswith("cuda"),
            "load_col": None if sequential else {"inter": ["user_id", "item_id", "timestamp"]},
            "alias_of_item_id": ["item_id_list"] if sequential else None,
            "eval_args": {
                "group_by": "user",
                "order": "TO",
                "mode": "full",
                "split": {"RS": [1.0, 0.0, 0.0]},
            },
            "valid_metric_bigger": True,
            "log_wandb": False,
        }
        if sequential and "train_neg_sample_args" not in cfg:
            loss = cfg.get("loss_type", params.defaults(self.config.model).get("loss_type"))
            if loss == "CE":
                fixed["train_neg_sample_args"] = None
        return {**cfg, **fixed}

    def _maps(self, data: ModelData, dataset: Any) -> None:
        """Index maps between RecBole ids and harness indices (id 0 is RecBole's padding)."""
        item_tokens = dataset.field2id_token["item_id"]
        user_tokens = dataset.field2id_token["user_id"]
        self._rb_items = np.array([int(t) for t in item_tokens[1:]], dtype=np.int64)
        self._item_to_rb = np.zeros(data.n_items, dtype=np.int64)
        self._item_to_rb[self._rb_items] = np.arange(1, len(item_tokens))
        self._user_to_rb = np.zeros(data.n_users, dtype=np.int64)
        users = np.array([int(t) for t in user_tokens[1:]], dtype=np.int64)
        self._user_to_rb[users] = np.arange(1, len(user_tokens))
        self._n_items = data.n_items
        self._n_rb_items = len(item_tokens)
        if self.kind == "sequential":
            self._max_len = int(dataset.field2seqlen["item_id_list"])

    def _build_model(self, config: Any, train_data: Any) -> None:
        from recbole.utils import get_model

        self.model = get_model(self.config.model)(config, train_data._dataset).to(config["device"])
        self._device = config["device"]

    def _trainer(self, config: Any, ctx: FitContext) -> Any:
        from recbole.utils import get_trainer

        base = get_trainer(config["MODEL_TYPE"], self.config.model)
        cls = type(f"Harness{base.__name__}", (_HarnessTrainerMixin, base), {})
        trainer = cls(config, self.model)
        trainer.attach(self, ctx)
        return trainer

    def validate(self, ctx: FitContext) -> dict[str, float]:
        """The harness's valid metrics for the current weights (``ctx.validate(self)``)."""
        result = dict(ctx.validate(self))  # type: ignore[misc]
        if ctx.early_stopping_metric not in result:
            raise ConfigError(
                f"early-stopping metric '{ctx.early_stopping_metric}' is not among the valid "
                f"metrics ({', '.join(sorted(result))})"
            )
        self.valid_history.append(result)
        return result

    # ---------------------------------------------------------------- score
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """(len(users), n_items) float64 scores; NaN where RecBole cannot score (see ``scorable``).

        General models score with RecBole's view of the user (learned from train; ``history`` is
        not used). Sequential models read the last ``MAX_ITEM_LIST_LENGTH`` known items of
        ``history.sequences[u]``, so at test time they see the valid interactions too.
        """
        import torch

        if self.model is None:
            raise RuntimeError("RecBole model is not fitted: call fit() first")
        users = np.asarray(users, dtype=np.int64)
        out = np.full((len(users), self._n_items), np.nan, dtype=np.float64)
        step = max(1, SCORES_PER_CALL // max(1, self._n_rb_items))
        self.model.eval()
        with torch.no_grad(), compat.torch_threads(self.config.threads):
            for start in range(0, len(users), step):
                rows = slice(start, start + step)
                self._score_chunk(users[rows], history, out[rows])
        return out

    def _score_chunk(self, users: np.ndarray, history: History, out: np.ndarray) -> None:
        if self.kind == "sequential":
            inter, ok = self._sequence_input(users, history)
        else:
            ok = self._user_to_rb[users] > 0
            inter = self._interaction({"user_id": self._user_to_rb[users][ok]})
        if not ok.any():
            return
        scores = self._full_sort(inter, int(ok.sum()))
        if ok.all():
            out[:, self._rb_items] = scores[:, 1:]
        else:
            out[np.flatnonzero(ok)[:, None], self._rb_items[None, :]] = scores[:, 1:]

    def _sequence_input(self, users: np.ndarray, history: History) -> tuple[Any, np.ndarray]:
        """RecBole's item_id_list (left-aligned, 0-padded) from the passed history."""
        seqs = []
        for u in users:
            rb = self._item_to_rb[history.sequences[int(u)]]
            seqs.append(rb[rb > 0][-self._max_len :])
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        ok = lengths > 0
        mat = np.zeros((int(ok.sum()), self._max_len), dtype=np.int64)
        for row, s in enumerate(s for s in seqs if len(s)):
            mat[row, : len(s)] = s
        fields = {
            "user_id": self._user_to_rb[users][ok],
            "item_id_list": mat,
            "item_length": lengths[ok],
        }
        return self._interaction(fields), ok

    def _interaction(self, fields: dict[str, np.ndarray]) -> Any:
        import torch
        from recbole.data.interaction import Interaction

        return Interaction({k: torch.from_numpy(v) for k, v in fields.items()}).to(self._device)

    def _full_sort(self, inter: Any, n: int) -> np.ndarray:
        try:
            scores = self.model.full_sort_predict(inter)
        except NotImplementedError:
            scores = self._pairwise_predict(inter, n)
        return scores.view(n, self._n_rb_items).float().cpu().numpy()

    def _pairwise_predict(self, inter: Any, n: int) -> Any:
        """``predict`` over every (user, item) pair, in bounded chunks of users."""
        import torch

        items = torch.arange(self._n_rb_items, device=self._device)
        per = max(1, PAIRS_PER_CALL // self._n_rb_items)
        parts = []
        for start in range(0, n, per):
            sub = inter[start : start + per]
            m = len(sub)
            pairs = sub.repeat_interleave(self._n_rb_items)
            pairs.update(self._interaction({"item_id": items.repeat(m).cpu().numpy()}))
            parts.append(self.model.predict(pairs).view(m, self._n_rb_items))
        return torch.cat(parts)

    def scorable(self, users: np.ndarray, history: History) -> np.ndarray:
        """Bool mask of ``score``'s shape: where the scores are not NaN.

        Items: those RecBole saw in train. Rows: general models need the user in train;
        sequential models need at least one such item in ``history.sequences[u]``.
        """
        users = np.asarray(users, dtype=np.int64)
        items = self._item_to_rb > 0
        if self.kind == "sequential":
            rows = np.array([bool(items[history.sequences[int(u)]].any()) for u in users])
        else:
            rows = self._user_to_rb[users] > 0
        return rows.reshape(-1, 1) & items.reshape(1, -1)

    # ---------------------------------------------------------------- misc
    def n_parameters(self) -> int:
        """Sum of the numels of the RecBole model's parameters."""
        if self.model is None:
            return 0
        return int(sum(p.numel() for p in self.model.parameters()))

    def refit_params(self) -> dict[str, Any]:
        """The refit on train+valid trains for the epochs that early stopping chose."""
        return {"epochs": self.best_epoch + 1} if self.best_epoch >= 0 else {}

    def report(self) -> ModelReport:
        """Best epoch (0-based) and epochs trained, for the run's record."""
        return ModelReport(
            metrics={
                "recbole_best_epoch": float(self.best_epoch),
                "recbole_epochs_trained": float(self.epochs_trained),
            }
        )


class _HarnessValid:
    """Stands in for RecBole's valid dataloader: truthy, never iterated."""

    def __bool__(self) -> bool:
        return True


_HARNESS_VALID = _HarnessValid()


class _HarnessTrainerMixin:
    """Put before a RecBole trainer class: validation by the harness, best state in memory."""

    def attach(self, owner: RecBoleModel, ctx: FitContext) -> None:
        self.owner, self.ctx = owner, ctx
        self.best_state: tuple[dict, Any] | None = None
        self.epochs_done = 0
        self.bar = None
        if ctx.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.epochs, desc=f"{owner.config.model} epochs", unit="epoch")

    def _train_epoch(self, train_data: Any, epoch_idx: int, *args: Any, **kwargs: Any) -> Any:
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        self.epochs_done = epoch_idx + 1
        if self.bar is not None:
            self.bar.update(1)
        return loss

    def _valid_epoch(self, valid_data: Any, show_progress: bool = False) -> tuple[float, dict]:
        result = self.owner.validate(self.ctx)
        value = float(result[self.ctx.early_stopping_metric])
        if self.bar is not None:
            self.bar.set_postfix({self.ctx.early_stopping_metric: f"{value:.4f}"})
        return value, result

    def on_valid(self, epoch_idx: int, valid_score: float) -> None:
        """RecBole's callback after each validation: snapshot the weights on improvement."""
        if self.cur_step == 0:  # RecBole's early_stopping just recorded a new best
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best_state = (state, copy.deepcopy(self.model.other_parameter()))
            self.owner.best_epoch = epoch_idx

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _freeze(value: Any) -> Any:
    """Hashable form of a yaml value (lists -> tuples, dicts -> ('__dict__', pairs))."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__dict__":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _named(cls_name: str, recbole_model: str, registry_name: str) -> type[RecBoleModel]:
    doc = f"RecBole's {recbole_model} through the harness adapter (``model={registry_name}``)."
    attrs = {
        "recbole_model": recbole_model,
        "name": registry_name,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": cls_name,
    }
    return type(cls_name, (RecBoleModel,), attrs)


BPR = _named("BPR", "BPR", "bpr")
LightGCN = _named("LightGCN", "LightGCN", "lightgcn")
NeuMF = _named("NeuMF", "NeuMF", "neumf")
MultVAE = _named("MultVAE", "MultiVAE", "multvae")
SASRec = _named("SASRec", "SASRec", "sasrec")
GRU4Rec = _named("GRU4Rec", "GRU4Rec", "gru4rec")
BERT4Rec = _named("BERT4Rec", "BERT4Rec", "bert4rec")
