"""Attention pooling and factorized bilinear pooling: the seed-001 fusion network.

Zhou, Meng, Zhang, Peng, Du, Wang and Qiao, "Exploring emotion features and fusion
strategies for audio-video emotion recognition" (EmotiW 2019). Each modality's features of
a window are pooled into one vector by an intra-modal attention (self-, relation- or
transformer-attention, eq. 1-7 of the paper), the two vectors are fused by factorized
bilinear pooling (FBP, eq. 9) or plain concatenation, and a linear layer gives the class
logits (or raw valence/arousal outputs).

What differs from the paper
---------------------------
- Visual stream: the paper attends over the frames of a clip, each a CNN face feature; here
  the frames are the 5 Hz bins of a window and each bin holds a face embedding of the
  pipeline (``embed_faces``), so the network is the same and only the feature source moves.
- Audio stream: the paper attends over the positions of a CNN feature map computed from a
  spectrogram (an ImageNet-pretrained AlexNet/VGG front end). Those ImageNet weights cannot be
  downloaded on these machines, so the network attends over the 5 Hz bins of the pipeline's
  audio embeddings instead (``embed_audio``: log-mel, MFCC or GE2E per bin). The audio
  attention therefore weighs moments of the window, not time-frequency regions.
- Missing data: a bin without a face (or without audio) has ``mask`` False and takes no part
  in any sum. A window whose bins are all invalid for a modality pools to a zero vector
  (not NaN); the fused layer then sees only the other modality's contribution plus biases.
- Input scaling: the pipeline's embeddings are not standardised (log-mel is in dB), so by
  default each modality's valid bins pass a batch normalisation first (``input_norm``); the
  paper's CNN features needed none. Set ``input_norm=False`` for the paper's layout.
- FBP: projections, element-wise product, dropout, sum pooling over groups of ``k``, power
  normalisation (signed square root) and l2 normalisation, the order of the multi-modal
  factorized bilinear pooling of Yu et al. (ICCV 2017) that the paper builds on. The default
  ``k`` = 5 and ``o`` = 1000 are Yu et al.'s; the paper text available here does not restate
  them, so they are the reference values, not a verified copy of the EmotiW setting.

Layout of the input: :mod:`pipeline.models.fusion_inputs` (``[B, T, Dv + 1 + Da + 1]``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.models.fusion_inputs import unpack_inputs

__all__ = [
    "ATTENTION_KINDS",
    "AttentionFBPNet",
    "AttentionPool",
    "FactorizedBilinearPooling",
    "masked_softmax_pool",
    "signed_sqrt",
]

AttentionKind = Literal["self", "relation", "transformer"]
ATTENTION_KINDS = ("self", "relation", "transformer")
FUSIONS = ("fbp", "concat")


def masked_softmax_pool(
    scores: torch.Tensor, mask: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """``sum_i w_i values_i`` with ``w = softmax(scores)`` over the valid positions only.

    Parameters
    ----------
    scores : (B, T) float tensor
        Unnormalised log-weights; entries under a False mask are ignored (any value).
    mask : (B, T) bool tensor
        True where position ``i`` of row ``b`` is valid.
    values : (B, T, D) float tensor
        Vectors to pool; entries under a False mask must be finite (they get weight 0).

    Returns
    -------
    (B, D) tensor. A row without any valid position gives zeros (no NaN, finite gradients):
    its scores are all replaced by the same finite number, so the softmax is uniform, and the
    mask then sets every weight to 0.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=1) * mask
    return torch.einsum("bt,btd->bd", weights, values)


class AttentionPool(nn.Module):
    """Pool a variable number of feature vectors ``f_1 .. f_n`` into one (paper eq. 1-7).

    Parameters
    ----------
    dim : int
        Feature size D of each ``f_i``.
    kind : {'self', 'relation', 'transformer'}
        - ``self``: ``a_i = sigmoid(f_i . w0)``, ``f_s = sum a_i f_i / sum a_i`` (eq. 1-2),
          output size D.
        - ``relation``: ``f_s`` as above, then ``b_i = sigmoid([f_i : f_s] . w1)`` and
          ``f_r = sum a_i b_i [f_i : f_s] / sum a_i b_i`` (eq. 3-4), output size 2D.
        - ``transformer``: ``f'_i = W2 f_i + b``, ``g_i = exp(u . tanh(f'_i))``,
          ``f_t = sum g_i f_i / sum g_i`` (eq. 5-7), output size D.
    hidden : int, default=128
        Rows of ``W2`` (transformer-attention only; the paper does not give it).

    Notes
    -----
    Every ratio ``sum w_i x_i / sum w_i`` is computed as a softmax of ``log w_i`` over the valid
    positions (:func:`masked_softmax_pool`), which is the same number without the overflow of
    ``exp`` or the underflow of ``sigmoid``: ``log a_i = logsigmoid(f_i . w0)`` and
    ``log g_i = u . tanh(f'_i)``. Like the paper's equations, ``w0`` and ``w1`` have no bias.
    """

    def __init__(self, dim: int, kind: AttentionKind = "self", hidden: int = 128):
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {kind!r}")
        self.kind = kind
        self.out_dim = 2 * dim if kind == "relation" else dim
        if kind in ("self", "relation"):
            self.w0 = nn.Linear(dim, 1, bias=False)
        if kind == "relation":
            self.w1 = nn.Linear(2 * dim, 1, bias=False)
        if kind == "transformer":
            self.w2 = nn.Linear(dim, hidden)
            self.u = nn.Linear(hidden, 1, bias=False)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool ``f`` (B, T, D) over its valid positions ``mask`` (B, T) bool.

        Returns
        -------
        (B, D) tensor, (B, 2D) for ``relation``; zeros for a row without a valid position.
        """
        f = f.masked_fill(~mask[..., None], 0.0)  # nothing under the mask reaches a sum
        if self.kind == "transformer":
            log_g = self.u(torch.tanh(self.w2(f))).squeeze(-1)
            return masked_softmax_pool(log_g, mask, f)
        log_a = F.logsigmoid(self.w0(f).squeeze(-1))
        f_s = masked_softmax_pool(log_a, mask, f)
        if self.kind == "self":
            return f_s
        f_cat = torch.cat([f, f_s[:, None, :].expand_as(f)], dim=-1)  # [f_i : f_s]
        log_b = F.logsigmoid(self.w1(f_cat).squeeze(-1))
        return masked_softmax_pool(log_a + log_b, mask, f_cat)


def signed_sqrt(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Power normalisation ``sign(z) sqrt(|z| + eps)``; ``eps`` keeps the gradient at 0 finite."""
    return torch.sign(z) * torch.sqrt(z.abs() + eps)


class FactorizedBilinearPooling(nn.Module):
    """``z = SumPool(U^T x o V^T y, k)`` (paper eq. 9), then power and l2 normalisation.

    Parameters
    ----------
    dim_x, dim_y : int
        Sizes of the two input vectors.
    k : int
        Factor (rank) of the factorisation: each output is the sum of ``k`` products.
    out : int
        Output size ``o``; ``U`` and ``V`` project to ``k * o``.
    dropout : float
        Dropout on the element-wise product, before the sum pooling (as in Yu et al.).
    power_norm : bool
        Apply :func:`signed_sqrt` after the sum pooling.

    Notes
    -----
    Sum pooling adds non-overlapping groups of ``k`` consecutive entries of the product:
    ``z_j = sum_{m < k} p_{j k + m}`` for ``j < o``.
    """

    def __init__(
        self, dim_x: int, dim_y: int, k: int, out: int, dropout: float, power_norm: bool = True
    ):
        super().__init__()
        self.k, self.out_dim, self.power_norm = k, out, power_norm
        self.u = nn.Linear(dim_x, k * out)
        self.v = nn.Linear(dim_y, k * out)
        self.drop = nn.Dropout(dropout)

    def pool(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sum-pooled product before normalisation, (B, o)."""
        p = self.drop(self.u(x) * self.v(y))
        return p.view(p.shape[0], self.out_dim, self.k).sum(-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Fuse ``x`` (B, dim_x) and ``y`` (B, dim_y) into ``z`` (B, o) of unit l2 norm."""
        z = self.pool(x, y)
        if self.power_norm:
            z = signed_sqrt(z)
        return F.normalize(z, dim=-1)


class _ValidBatchNorm(nn.Module):
    """Batch normalisation of the valid rows of ``f`` (B, T, D); invalid rows stay zero.

    A training batch with fewer than two valid rows is normalised with the running
    statistics (batch statistics of one row are undefined).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = f[mask]
        bn = self.bn
        normed = F.batch_norm(
            rows,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            training=self.training and rows.shape[0] > 1,
            momentum=bn.momentum,
            eps=bn.eps,
        )
        out = torch.zeros(f.shape[:-1] + (normed.shape[-1],), dtype=f.dtype, device=f.device)
        out[mask] = normed
        return out


class _Stream(nn.Module):
    """One modality: optional batch norm and per-bin FC layer, then attention pooling."""

    def __init__(
        self, dim: int, kind: AttentionKind, input_norm: bool, hidden: int | None, attn: int
    ):
        super().__init__()
        self.norm = _ValidBatchNorm(dim) if input_norm else None
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden else None
        self.pool = AttentionPool(hidden or dim, kind, attn)
        self.out_dim = self.pool.out_dim

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            f = self.norm(f, mask)
        if self.fc is not None:
            f = self.fc(f)
        return self.pool(f, mask)


class AttentionFBPNet(nn.Module):
    """Seed-001 network: attention pooling per modality, FBP (or concat) fusion, linear head.

    Parameters
    ----------
    dim_v, dim_a : int
        Face and audio embedding sizes of the packed input (Dv, Da).
    n_out : int
        Outputs: class logits (K) or raw valence/arousal values (2).
    visual_attention, audio_attention : {'self', 'relation', 'transformer'}, default='self'
        Intra-modal pooling of each modality (:class:`AttentionPool`).
    fusion : {'fbp', 'concat'}, default='fbp'
        Cross-modal fusion: :class:`FactorizedBilinearPooling` or concatenation of the two
        pooled vectors (the paper's two options).
    fbp_k : int, default=5
        FBP factor ``k`` (Yu et al. 2017's value; see the module notes).
    fbp_out : int, default=1000
        FBP output size ``o`` (Yu et al. 2017's value).
    dropout : float, default=0.1
        Dropout on the FBP product (Yu et al.'s 0.1), or on the concatenated vector.
    hidden : int or None, default=None
        Size of an FC + ReLU layer applied to every bin of each modality before the
        attention; None attends over the embeddings themselves (as the paper does over its
        CNN features).
    attention_hidden : int, default=128
        Rows of ``W2`` of transformer-attention (not given in the paper).
    input_norm : bool, default=True
        Batch-normalise each modality's valid bins first (see the module notes).
    power_norm : bool, default=True
        Signed square root in FBP before the l2 normalisation.

    Notes
    -----
    ``forward(x)`` takes the packed windows ``x`` (B, T, Dv + 1 + Da + 1) of
    :mod:`pipeline.models.fusion_inputs` and returns (B, n_out) raw outputs.
    """

    def __init__(
        self,
        dim_v: int,
        dim_a: int,
        n_out: int,
        visual_attention: AttentionKind = "self",
        audio_attention: AttentionKind = "self",
        fusion: Literal["fbp", "concat"] = "fbp",
        fbp_k: int = 5,
        fbp_out: int = 1000,
        dropout: float = 0.1,
        hidden: int | None = None,
        attention_hidden: int = 128,
        input_norm: bool = True,
        power_norm: bool = True,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.init_kwargs = dict(
            dim_v=dim_v,
            dim_a=dim_a,
            n_out=n_out,
            visual_attention=visual_attention,
            audio_attention=audio_attention,
            fusion=fusion,
            fbp_k=fbp_k,
            fbp_out=fbp_out,
            dropout=dropout,
            hidden=hidden,
            attention_hidden=attention_hidden,
            input_norm=input_norm,
            power_norm=power_norm,
        )  # to rebuild from a state dict (pipeline.models.persist)
        self.dim_v, self.dim_a, self.fusion = dim_v, dim_a, fusion
        self.visual = _Stream(dim_v, visual_attention, input_norm, hidden, attention_hidden)
        self.audio = _Stream(dim_a, audio_attention, input_norm, hidden, attention_hidden)
        if fusion == "fbp":
            self.fbp = FactorizedBilinearPooling(
                self.visual.out_dim, self.audio.out_dim, fbp_k, fbp_out, dropout, power_norm
            )
            fused = fbp_out
        else:
            self.drop = nn.Dropout(dropout)
            fused = self.visual.out_dim + self.audio.out_dim
        self.head = nn.Linear(fused, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (B, n_out) of packed windows ``x`` (B, T, Dv + 1 + Da + 1)."""
        v, v_mask, a, a_mask = unpack_inputs(x, self.dim_v, self.dim_a)
        fv = self.visual(v, v_mask)
        fa = self.audio(a, a_mask)
        if self.fusion == "fbp":
            z = self.fbp(fv, fa)
        else:
            z = self.drop(torch.cat([fv, fa], dim=-1))
        return self.head(z)
