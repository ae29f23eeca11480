"""LSTM classifier over sequences of feature vectors, with a scikit-learn interface.

``LSTMSequenceClassifier`` takes ``X`` [N, S, D] (N sequences of S steps of D features)
and either one label per sequence (``y`` [N], sequence-to-one: the last LSTM step is
classified) or one label per step (``y`` [N, S], sequence-to-sequence: every step is
classified). Label ``-1`` means "no label" and is masked out of the loss (ABAW
convention). A 2-D ``X`` [N, D] is read as sequences of one step (S = 1), which is what
scikit-learn's estimator checks feed it.

Training: Adam on a masked, optionally class-weighted cross-entropy, mini-batches
shuffled with a seeded ``torch.Generator``, early stopping on the validation loss
(given, or a seeded hold-out ``validation_fraction`` of the training sequences), and
the weights of the best validation epoch restored at the end. All torch randomness
(initialisation, dropout, shuffling) comes from ``random_state`` inside
``torch.random.fork_rng``, so a fixed seed gives identical models on CPU and the global
torch RNG of the caller is left untouched.

:func:`fit_torch_classifier` is the training loop itself; the end-to-end audio model in
:mod:`pipeline.models.audio_cnn_lstm` reuses it.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
from torch import nn

from pipeline.metrics import uar
from pipeline.models.class_weights import MASK_LABEL, log_class_weights
from pipeline.models.persist import TorchPickleMixin

log = logging.getLogger(__name__)

__all__ = [
    "LSTMSequenceClassifier",
    "fit_torch_classifier",
    "fork_rng_devices",
    "predict_logits",
    "resolve_class_weights",
    "seed_from_random_state",
    "split_validation",
]


# --------------------------------------------------------------------------- helpers
def seed_from_random_state(random_state: int | np.random.RandomState | None) -> int:
    """An int seed in ``[0, 2**31 - 1)`` drawn from a scikit-learn ``random_state``.

    An int always gives the same seed; ``None`` gives a fresh one (not reproducible).
    """
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def resolve_class_weights(
    class_weight: dict | str | None,
    classes: np.ndarray,
    y_idx: np.ndarray,
    r: float,
) -> np.ndarray | None:
    """Per-class loss weights [K] from a ``class_weight`` parameter.

    Parameters
    ----------
    class_weight : dict, 'log', 'balanced' or None
        dict: ``{label: weight}`` (missing labels get 1); ``'log'``:
        :func:`~pipeline.models.class_weights.log_class_weights` with ``r``;
        ``'balanced'``: ``N / (K * n_i)``; None: no weighting.
    classes : (K,) array
        Class labels, in column order.
    y_idx : int array of any shape
        Encoded labels in ``[0, K)``, ``-1`` = no label.
    r : float
        Constant of the logarithmic weights.

    Returns
    -------
    (K,) float64 array or None (no weighting).
    """
    if class_weight is None:
        return None
    n_classes = len(classes)
    if isinstance(class_weight, dict):
        return np.array(
            [float(class_weight.get(c.item() if hasattr(c, "item") else c, 1.0)) for c in classes]
        )
    if class_weight == "log":
        return log_class_weights(y_idx, n_classes, r)
    if class_weight == "balanced":
        lab = np.asarray(y_idx).ravel()
        counts = np.bincount(lab[lab != MASK_LABEL], minlength=n_classes).astype(np.float64)
        return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 1.0)
    raise ValueError(
        f"class_weight must be None, a dict, 'log' or 'balanced', got {class_weight!r}"
    )


def _masked_ce_sum(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of (weighted) cross-entropy over labelled targets and the sum of their weights.

    ``logits`` [..., K] and ``target`` [...] (``-1`` = masked) are flattened; the mean
    loss is ``sum / denom`` (the same as ``nn.CrossEntropyLoss(weight, ignore_index=-1,
    label_smoothing=label_smoothing)``).
    """
    logits = logits.reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    loss_sum = nn.functional.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=MASK_LABEL,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    valid = target != MASK_LABEL
    if weight is None:
        denom = valid.sum().to(logits.dtype)
    else:
        denom = weight[target[valid]].sum()
    return loss_sum, denom


@torch.no_grad()
def predict_logits(
    module: nn.Module, X: torch.Tensor, *, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """Logits of ``module`` (in eval mode) for ``X`` [N, ...], batch by batch, on CPU.

    Returns
    -------
    (N, ..., K) float32 tensor on CPU.
    """
    module.eval()
    outs = [
        module(X[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, X.shape[0], batch_size)
    ]
    return torch.cat(outs) if outs else torch.empty(0)


def _uar(module, X, y, batch_size, device) -> float:
    """:func:`pipeline.metrics.uar` of ``module``'s argmax on the labelled rows of (X, y)
    (sequence-to-one labels [N] or one per step [N, S]; ``-1`` masked)."""
    pred = predict_logits(module, X, batch_size=batch_size, device=device).argmax(-1)
    y, pred = y.reshape(-1).numpy(), pred.reshape(-1).numpy()
    keep = y != MASK_LABEL
    return uar(y[keep], pred[keep])


def _mean_loss(module, X, y, weight, batch_size, device) -> float:
    """Weighted mean masked cross-entropy of ``module`` on (X, y) in eval mode."""
    module.eval()
    total, denom = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, X.shape[0], batch_size):
            ls, dn = _masked_ce_sum(
                module(X[i : i + batch_size].to(device)), y[i : i + batch_size].to(device), weight
            )
            total += float(ls)
            denom += float(dn)
    return total / denom if denom > 0 else math.nan


def fit_torch_classifier(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    X_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    patience: int | None,
    tol: float,
    class_weights: np.ndarray | None,
    device: torch.device | str,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    cosine: bool = False,
    ema: float | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    select: str = "loss",
    precision: str = "fp32",
    label_smoothing: float = 0.0,
) -> tuple[list[dict], int]:
    """Train a classifier module with Adam and early stopping on the validation loss (or UAR).

    The loss is the masked, class-weighted cross-entropy unless ``loss_fn`` is given
    (e.g. ``1 - CCC`` for valence/arousal regression).

    Parameters
    ----------
    module : nn.Module
        Maps a batch ``X[b]`` to logits [B, K] (sequence-to-one) or [B, S, K] (one per
        step); moved to ``device`` and trained in place.
    X, y : tensors
        Training inputs [N, ...] (float32, CPU) and encoded labels [N] or [N, S]
        (int64, ``-1`` = masked).
    X_val, y_val : tensors or None
        Validation set in the same layout; without it there is no early stopping and the
        weights after the last epoch are kept.
    epochs : int
        Maximum number of passes over the training set.
    lr, weight_decay : float
        Adam learning rate and L2 weight decay.
    batch_size : int
        Sequences per mini-batch.
    patience : int or None
        Stop after this many epochs without a validation-loss improvement larger than
        ``tol``; None disables early stopping (all epochs run, best epoch still restored).
    tol : float
        Minimum decrease of the validation loss that counts as an improvement.
    class_weights : (K,) array or None
        Cross-entropy class weights.
    device : str or torch.device
        Where to train; batches are moved there one at a time.
    generator : torch.Generator
        CPU generator that shuffles the mini-batches.
    grad_clip : float or None
        Clip the global gradient norm to this value.
    augment : callable or None
        ``augment(xb, generator) -> xb``: a random transform of each training batch (on the
        CPU, drawn from ``generator``, so a seed gives the same run); validation data is
        never augmented.
    cosine : bool
        Anneal the learning rate from ``lr`` to 0 over ``epochs`` (cosine); the late,
        small steps settle the weights, so the epoch early stopping keeps is less noisy.
    ema : float or None
        Decay per optimiser step of an exponential moving average of the weights (and
        BatchNorm statistics); validation and the returned module use the average.
        0.99 averages over about the last 100 steps: on a few hundred windows the raw weights
        jump between epochs, their average does not.
    loss_fn : callable or None
        ``loss_fn(outputs [B, ...], targets [B, ...]) -> scalar`` replacing the
        cross-entropy: ``y`` then holds float targets (no masking, no class weights), a
        batch of one item is skipped (a correlation needs two), the training loss is the
        item-weighted mean of the batch losses and the validation loss is ``loss_fn`` of
        all validation outputs at once.
    select : {"loss", "uar"}
        What picks the epoch kept and drives early stopping: the lowest validation loss, or
        the highest validation UAR (unweighted average recall over the classes present in
        ``y_val``; classification only). The loss of a small validation set follows a few
        confident mistakes; its recall follows the decisions that are scored.
    precision : {"fp32", "bf16"}
        Arithmetic of the training forward passes: float32, or ``torch.autocast`` to
        bfloat16 (convolutions and matrix products in bf16, losses and weights in float32).
        bf16 halves the time per batch where the hardware has bf16 units (CPUs with
        avx512_bf16 or AMX, recent GPUs) and is slower where it is emulated. Validation and
        prediction stay float32.
    label_smoothing : float
        Weight of the uniform distribution mixed into the training targets of the
        cross-entropy (``nn.functional.cross_entropy``'s ``label_smoothing``); the validation
        loss that picks the epoch stays the plain cross-entropy.

    Returns
    -------
    history : list of dict
        One dict per epoch run: ``epoch`` (1-based), ``lr`` (the epoch's learning rate),
        ``train_loss`` (mean over the
        epoch's batches, weighted by labelled targets), ``val_loss`` (None without a
        validation set), and ``val_uar`` with ``select="uar"``.
    best_epoch : int
        Epoch whose weights the module holds on return (last epoch without validation).
    """
    if select not in ("loss", "uar") or (select == "uar" and loss_fn is not None):
        raise ValueError(f"select must be 'loss' or (classification only) 'uar', got {select!r}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    module.to(device)
    device_type = torch.device(device).type
    weight = (
        None
        if class_weights is None
        else torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    )
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if cosine else None
    averaged = (
        None
        if ema is None
        else torch.optim.swa_utils.AveragedModel(
            module, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema), use_buffers=True
        )
    )
    judged = module if averaged is None else averaged.module  # the weights validation sees
    n = X.shape[0]
    has_val = X_val is not None and X_val.shape[0] > 0
    best_score, best_epoch, best_state, wait = math.inf, 0, None, 0
    history: list[dict] = []
    for epoch in range(1, epochs + 1):
        module.train()
        epoch_lr = opt.param_groups[0]["lr"]
        order = torch.randperm(n, generator=generator)
        total, denom = 0.0, 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            xb = X[idx] if augment is None else augment(X[idx], generator)
            xb, yb = xb.to(device), y[idx].to(device)
            if loss_fn is not None and len(idx) < 2:
                continue  # a correlation needs two items
            if loss_fn is None and not bool((yb != MASK_LABEL).any()):
                continue  # nothing labelled in this batch
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = module(xb)
            out = out.float()
            if loss_fn is not None:
                loss = loss_fn(out, yb)
                loss_sum, dn = loss * len(idx), torch.tensor(float(len(idx)))
            else:
                loss_sum, dn = _masked_ce_sum(out, yb, weight, label_smoothing)
                loss = loss_sum / dn
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            opt.step()
            if averaged is not None:
                averaged.update_parameters(module)
            total += float(loss_sum.detach())
            denom += float(dn.detach())
        if schedule is not None:
            schedule.step()
        train_loss = total / denom if denom > 0 else math.nan
        if not has_val:
            val_loss = None
        elif loss_fn is not None:
            out = predict_logits(judged, X_val, batch_size=batch_size, device=device)
            val_loss = float(loss_fn(out, y_val.float()))
        else:
            val_loss = _mean_loss(judged, X_val, y_val, weight, batch_size, device)
        row = {"epoch": epoch, "lr": epoch_lr, "train_loss": train_loss, "val_loss": val_loss}
        if has_val and select == "uar":
            row["val_uar"] = _uar(judged, X_val, y_val, batch_size, device)
        history.append(row)
        log.info(
            "epoch %d/%d train_loss %.5f val_loss %s%s",
            epoch,
            epochs,
            train_loss,
            val_loss,
            f" val_uar {row['val_uar']:.4f}" if "val_uar" in row else "",
        )
        if not has_val:
            best_epoch = epoch
            continue
        score = -row["val_uar"] if select == "uar" else val_loss  # lower is better
        if score < best_score - tol:
            best_score, best_epoch, wait = score, epoch, 0
            best_state = copy.deepcopy(judged.state_dict())
        else:
            wait += 1
            if patience is not None and wait >= patience:
                log.info(
                    "early stopping at epoch %d (best epoch %d, %s %.5f)",
                    epoch,
                    best_epoch,
                    "val_uar" if select == "uar" else "val_loss",
                    abs(best_score),
                )
                break
    if best_state is None and averaged is not None:
        best_state = averaged.module.state_dict()  # no validation: the final average
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history, best_epoch


def fork_rng_devices(device: torch.device) -> list:
    """Devices whose RNG state ``torch.random.fork_rng`` must save and restore."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train, validation) indices.

    The validation part has ``round(fraction * n)`` items; it is empty if that is 0 or
    would leave no training item. Returned index arrays are sorted.
    """
    n_val = int(round(fraction * n))
    if n_val < 1 or n - n_val < 1:
        return np.arange(n), np.arange(0)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _ndim(X) -> int:
    """Number of dimensions of an array-like without triggering ``__array_function__``."""
    nd = getattr(X, "ndim", None)
    return nd if isinstance(nd, int) else np.asarray(X).ndim


# ----------------------------------------------------------------------------- model
class _LSTMNet(nn.Module):
    """Standardise -> LSTM stack -> dropout -> linear, on the last step or every step."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int,
        layers: int,
        dropout: float,
        seq2seq: bool,
        mean: np.ndarray,
        scale: np.ndarray,
    ):
        super().__init__()
        self.init_kwargs = dict(
            n_features=n_features,
            n_classes=n_classes,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            seq2seq=seq2seq,
            mean=np.asarray(mean).copy(),
            scale=np.asarray(scale).copy(),
        )  # to rebuild from a state dict (persist)
        self.seq2seq = seq2seq
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, S, D]
        out, _ = self.lstm((x - self.mean) / self.scale)  # [B, S, H]
        if not self.seq2seq:
            out = out[:, -1]  # [B, H]
        return self.head(self.drop(out))


class LSTMSequenceClassifier(TorchPickleMixin, ClassifierMixin, BaseEstimator):
    """Stacked-LSTM classifier for sequences of feature vectors (torch, sklearn API).

    Parameters
    ----------
    hidden : int, default=128
        LSTM hidden units per layer.
    layers : int, default=2
        Number of stacked LSTM layers.
    dropout : float, default=0.2
        Dropout between LSTM layers and before the output layer.
    epochs : int, default=50
        Maximum number of training epochs.
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=32
        Sequences per mini-batch.
    patience : int or None, default=5
        Early stopping: epochs without validation-loss improvement before stopping;
        None trains all ``epochs`` (the best validation epoch is still restored).
    tol : float, default=1e-4
        Minimum validation-loss decrease that counts as an improvement.
    validation_fraction : float, default=0.1
        Fraction of the training sequences held out (seeded) for early stopping when
        ``fit`` gets no ``X_val``; 0 disables the hold-out (then all epochs run and the
        last weights are kept).
    weight_decay : float, default=0.0
        Adam L2 weight decay.
    grad_clip : float or None, default=5.0
        Clip the global gradient norm to this value.
    class_weight : dict, 'log', 'balanced' or None, default=None
        Cross-entropy class weights (see :func:`resolve_class_weights`).
    class_weight_r : float, default=0.47
        The ``r`` of ``class_weight='log'``.
    ignore_label : int, str or None, default=-1
        Label value meaning "no label" (ABAW: -1), masked from the loss, from
        ``classes_`` and from ``score``. None makes every value a class (what
        scikit-learn's generic checks expect, since they use -1 as an ordinary label).
    standardize : bool, default=True
        Standardise each feature with the training mean and std (stored in the model).
    device : str, default='cpu'
        ``'cpu'``, ``'cuda'`` or ``'cuda:<i>'``. Only CPU runs are bit-reproducible.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, dropout, shuffling and the validation hold-out.

    Attributes
    ----------
    classes_ : (K,) array
        Labels seen in ``fit`` (``ignore_label`` excluded), in column order of
        ``predict_proba``.
    n_features_in_ : int
        Features per step D.
    seq2seq_ : bool
        True when fitted on per-step labels ``y`` [N, S].
    module_ : torch.nn.Module
        The trained network (in eval mode, on ``device``).
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (None without validation).
    best_epoch_ : int
        Epoch whose weights were kept.
    n_epochs_ : int
        Epochs actually run (< ``epochs`` when early stopping triggered).
    """

    def __init__(
        self,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        epochs: int = 50,
        lr: float = 1e-3,
        batch_size: int = 32,
        patience: int | None = 5,
        tol: float = 1e-4,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        grad_clip: float | None = 5.0,
        class_weight: dict | str | None = None,
        class_weight_r: float = 0.47,
        ignore_label: int | str | None = MASK_LABEL,
        standardize: bool = True,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
    ):
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.class_weight = class_weight
        self.class_weight_r = class_weight_r
        self.ignore_label = ignore_label
        self.standardize = standardize
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # ------------------------------------------------------------------ input checks
    def _validate_X(self, X, reset: bool) -> np.ndarray:
        """X as float32 [N, S, D]; 2-D input [N, D] becomes [N, 1, D]."""
        if _ndim(X) == 3:
            X = check_array(X, allow_nd=True, dtype=np.float32)
            if reset:
                self.n_features_in_ = X.shape[2]
                self.__dict__.pop("feature_names_in_", None)
            elif X.shape[2] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[2]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            return X
        X = validate_data(self, X, reset=reset, dtype=np.float32)
        return X[:, None, :]

    def _check_params(self) -> None:
        for name in ("hidden", "layers", "epochs", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, numbers.Integral) and v >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    def _labelled(self, y: np.ndarray) -> np.ndarray:
        """Boolean mask of labelled entries of y (entries != ``ignore_label``)."""
        if self.ignore_label is None:
            return np.ones(y.shape, dtype=bool)
        return np.asarray(y != self.ignore_label, dtype=bool)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        """Labels -> int64 indices into ``classes_``; ignored entries become -1."""
        out = np.full(y.shape, MASK_LABEL, dtype=np.int64)
        mask = self._labelled(y)
        idx = np.searchsorted(self.classes_, y[mask])
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], y[mask]):
            raise ValueError("y_val holds labels that are not in the training labels")
        out[mask] = idx
        return out

    def _validate_y(self, y, X3: np.ndarray, X_was_3d: bool) -> np.ndarray:
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = np.asarray(y)
        if X_was_3d and y.ndim == 2:
            if y.shape != X3.shape[:2]:
                raise ValueError(f"per-step y must have shape {X3.shape[:2]}, got {y.shape}")
            return y
        y = column_or_1d(y, warn=True)  # 2-D X has no time axis: [N, 1] -> [N]
        if y.shape[0] != X3.shape[0]:
            raise ValueError(f"X has {X3.shape[0]} samples but y has {y.shape[0]}")
        return y

    # --------------------------------------------------------------------------- fit
    def fit(self, X, y, X_val=None, y_val=None) -> LSTMSequenceClassifier:
        """Train the network.

        Parameters
        ----------
        X : (N, S, D) or (N, D) array-like, float
            Training sequences (2-D input is read as S = 1).
        y : (N,) or (N, S) array-like
            One label per sequence, or (with 3-D X) one label per step; ``-1`` = no
            label (``ignore_label``: masked from the loss).
        X_val, y_val : array-like or None
            Validation set in the same layout, used for early stopping instead of the
            ``validation_fraction`` hold-out.

        Returns
        -------
        self
        """
        self._check_params()
        X_was_3d = _ndim(X) == 3
        X3 = self._validate_X(X, reset=True)
        y = self._validate_y(y, X3, X_was_3d)
        check_classification_targets(y.ravel() if y.ndim == 2 else y)
        self.seq2seq_ = y.ndim == 2
        self.classes_ = np.unique(y[self._labelled(y)])
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; "
                f"got {len(self.classes_)} class"
            )
        y_idx = self._encode(y)

        seed = seed_from_random_state(self.random_state)
        if X_val is not None:
            Xv = self._validate_X(X_val, reset=False)
            yv = self._encode(self._validate_y(y_val, Xv, _ndim(X_val) == 3))
            X_tr, y_tr = X3, y_idx
        else:
            tr, va = split_validation(len(X3), self.validation_fraction, seed)
            X_tr, y_tr, Xv, yv = X3[tr], y_idx[tr], X3[va], y_idx[va]

        if self.standardize:
            mean = X_tr.reshape(-1, X_tr.shape[2]).mean(axis=0)
            std = X_tr.reshape(-1, X_tr.shape[2]).std(axis=0)
            scale = np.where(std > 1e-8, std, 1.0)
        else:
            mean, scale = np.zeros(X3.shape[2]), np.ones(X3.shape[2])
        cw = resolve_class_weights(self.class_weight, self.classes_, y_tr, self.class_weight_r)

        device = torch.device(self.device)
        with torch.random.fork_rng(devices=fork_rng_devices(device)):
            torch.manual_seed(seed)
            module = _LSTMNet(
                X3.shape[2],
                len(self.classes_),
                self.hidden,
                self.layers,
                self.dropout,
                self.seq2seq_,
                mean,
                scale,
            )
            gen = torch.Generator().manual_seed(seed)
            self.history_, self.best_epoch_ = fit_torch_classifier(
                module,
                torch.tensor(X_tr),
                torch.tensor(y_tr),
                torch.tensor(Xv) if len(Xv) else None,
                torch.tensor(yv) if len(Xv) else None,
                epochs=self.epochs,
                lr=self.lr,
                batch_size=self.batch_size,
                patience=self.patience,
                tol=self.tol,
                class_weights=cw,
                device=device,
                generator=gen,
                weight_decay=self.weight_decay,
                grad_clip=self.grad_clip,
            )
        self.module_ = module
        self.n_epochs_ = len(self.history_)
        log.info(
            "LSTM fitted: %d sequences x %d steps x %d features, %d classes, %d epochs (best %d)",
            X_tr.shape[0],
            X3.shape[1],
            X3.shape[2],
            len(self.classes_),
            self.n_epochs_,
            self.best_epoch_,
        )
        return self

    # ----------------------------------------------------------------------- predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits).

        Parameters
        ----------
        X : (N, S, D) or (N, D) array-like

        Returns
        -------
        (N, K) float64 array, or (N, S, K) for a sequence-to-sequence model given 3-D X
        (2-D X gives (N, K) either way); columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        X_was_3d = _ndim(X) == 3
        X3 = self._validate_X(X, reset=False)
        logits = predict_logits(
            self.module_,
            torch.tensor(X3),
            batch_size=max(256, self.batch_size),
            device=self.device,
        )
        proba = torch.softmax(logits.double(), dim=-1).numpy()
        if self.seq2seq_ and not X_was_3d:
            proba = proba[:, 0]
        return proba

    def predict(self, X) -> np.ndarray:
        """Most probable class: (N,) labels, or (N, S) for seq2seq models and 3-D X."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=-1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy over labelled targets (``ignore_label`` skipped; per step for seq2seq)."""
        pred = self.predict(X)
        y = np.asarray(y).reshape(pred.shape)
        mask = self._labelled(y)
        w = (
            None
            if sample_weight is None
            else np.broadcast_to(
                np.asarray(sample_weight, dtype=float).reshape((-1,) + (1,) * (pred.ndim - 1)),
                pred.shape,
            )[mask]
        )
        return float(np.average(pred[mask] == y[mask], weights=w))
