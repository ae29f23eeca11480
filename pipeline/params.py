"""Typed, validated access to ``params.yaml``: one pydantic model per section.

Every :func:`load_params` call validates the *whole* file against :class:`ParamsFile`
(unknown keys anywhere, types, ranges, enums, cross-section checks), so a mistake in any
section stops every stage before it reads an input. It then returns the stage's own view:
its section (or the keys :data:`SECTION_KEYS` lists) plus the ``base`` keys it declares in
:data:`STAGES` and the keys of other sections in :data:`OTHER_KEYS`. Nothing else is
reachable, and ``tests/test_dvc_yaml.py`` checks that these match the ``params:`` of each
stage in ``dvc.yaml``, so a stage can never read a param DVC does not track.

``params.yaml`` is the only source of defaults: no field here has one, every key is
required. Every problem becomes one :class:`~pipeline.errors.ParamsError` line naming the
file and the dotted param, e.g. ``params.yaml: fit.kelm.C: must be > 0 (got -1)`` or
``params.yaml: make_demo.n_video: unknown key (did you mean 'n_videos'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.errors import ParamsError
from pipeline.pretrained import CHECKPOINTS
from pipeline.scores import pipeline_models
from pipeline.video.faces import FaceConfig

# Strict scalars: a string "3" is not a number and true/false is not an integer.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an int is fine and becomes a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict(), Field(min_length=1)]

PosInt = Annotated[Int, Field(ge=1)]
SpeakerCode = Annotated[str, Strict(), Field(pattern=r"^[0-9]{2}$")]
NonNegInt = Annotated[Int, Field(ge=0)]
PosFloat = Annotated[Float, Field(gt=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
Fraction = Annotated[Float, Field(ge=0, le=1)]
OpenFraction = Annotated[Float, Field(ge=0, lt=1)]  # dropout, window overlap
LearningRate = Annotated[Float, Field(gt=0, le=1)]
AudioRate = Annotated[Int, Field(ge=8000, le=192000)]
Gamma = PosFloat | Literal["scale", "auto"]


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError("must be [low, high] with low <= high")
    return pair


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    if len({n.lower() for n in names}) != len(names):
        raise ValueError("must not repeat a name (case-insensitive)")
    return names


def _two_classes(names: tuple[str, ...]) -> tuple[str, ...]:
    if len(names) < 2:
        raise ValueError("must name at least two classes")
    return names


def _not_one_fold(k: int) -> int:
    if k == 1:
        raise ValueError("must be 0 (off) or at least 2 folds")
    return k


def _not_zero(n: int) -> int:
    if n == 0:
        raise ValueError("must be a positive count, or -1 for all cores")
    return n


Span = Annotated[tuple[Float, Float], AfterValidator(_ordered)]  # [low, high]
PosSpan = Annotated[tuple[PosFloat, PosFloat], AfterValidator(_ordered)]
NonNegSpan = Annotated[tuple[NonNegFloat, NonNegFloat], AfterValidator(_ordered)]
Names = Annotated[tuple[Str, ...], Field(min_length=1), AfterValidator(_distinct)]
Folds = Annotated[NonNegInt, AfterValidator(_not_one_fold)]  # 0 = off, else k >= 2

Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]
Task = Literal["expr", "va"]
Classes = Annotated[tuple[Str, ...], AfterValidator(_two_classes), AfterValidator(_distinct)]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]
NJobs = Annotated[Int, Field(ge=-1), AfterValidator(_not_zero)]
Executor = Literal["local", "dask"]
Split = Literal["train", "dev", "test"]
Source = Literal["vocals", "audio"]
FitModel = Literal["svm", "kelm", "lstm"]
FaceBackbone = Literal[
    "fer_xception", "dlib_resnet", "vggface2_resnet50", "vgg_fer", "distilled_fer"
]
FusionNetName = Literal["conv_lstm", "attention_fbp"]  # keys of fusion_net.NETS
RawAudioNetName = Literal["cnn_lstm_raw", "spec_attention"]  # keys of raw_audio.RAW_AUDIO_NETS
AudioBackbone = Literal["logmel", "mfcc", "ge2e_lstm", "cnn14", "vggish", "vggish_seq"]


def _error(key: str, problem: str) -> PydanticCustomError:
    """A cross-field error on ``key`` (dotted, relative to the model that raises it)."""
    return PydanticCustomError("params", "{key}: {problem}", {"key": key, "problem": problem})


class Section(BaseModel):
    """A mapping of params.yaml: every key required, unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(Section):
    """Section ``base``: settings shared by several stages."""

    seed: Seed
    task: Task
    classes: Classes  # label-index order
    label_rate_hz: PosFloat
    device: Device
    n_jobs: NJobs
    executor: Executor
    dask_scheduler: str | None

    @model_validator(mode="after")
    def _scheduler_for_dask(self) -> BaseParams:
        if self.executor == "dask" and not self.dask_scheduler:
            raise _error("executor", "dask needs base.dask_scheduler (the scheduler address)")
        return self


class GetPretrainedParams(Section):
    """Section ``get_pretrained``: checkpoints to fetch (names in pipeline.pretrained)."""

    models: Names

    @field_validator("models")
    @classmethod
    def _known(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(models) - set(CHECKPOINTS))
        if unknown:
            raise ValueError(f"unknown checkpoints {unknown}; known: {sorted(CHECKPOINTS)}")
        return models


class MakeDemoSection(Section):
    """Section ``make_demo``: composition of the embedded demo dataset."""

    n_videos: PosInt
    duration_s: PosSpan
    fps_choices: Annotated[tuple[PosFloat, ...], Field(min_length=1)]
    split_counts: dict[Split, NonNegInt]
    gap_prob: Fraction
    gap_s: NonNegSpan
    brightness: PosSpan
    scale: PosSpan
    shift_px: NonNegInt
    gain_db: Span
    background_snr_db: Span
    audio_rate_hz: AudioRate

    @model_validator(mode="after")
    def _counts_add_up(self) -> MakeDemoSection:
        total = sum(self.split_counts.values())
        if total != self.n_videos:
            raise _error(
                "split_counts", f"counts must add up to n_videos = {self.n_videos} (got {total})"
            )
        return self


class BuildManifestSection(Section):
    """Section ``build_manifest``: which dataset adapter reads the raw data."""

    adapter: Literal[
        "demo",
        "affwild2",
        "crema_d",
        "emodb",
        "ravdess",
        "enterface05",
        "afew",
        "fer2013",
        "recola",
        "csv",
    ]
    root: Str
    csv_file: Str | None
    crema_media: Literal["video", "audio"]
    split_fractions: dict[Split, Fraction]
    dev_speakers: tuple[SpeakerCode, ...]  # emodb, ravdess, enterface05: two-digit codes
    test_speakers: tuple[SpeakerCode, ...]
    max_label_mismatch_s: NonNegFloat
    strict: Bool

    @model_validator(mode="after")
    def _consistent(self) -> BuildManifestSection:
        if self.adapter == "csv" and self.csv_file is None:
            raise _error("csv_file", "required for the csv adapter (got None)")
        if sum(self.split_fractions.values()) <= 0:
            raise _error("split_fractions", "at least one fraction must be > 0")
        return self


class DetectFacesSection(Section):
    """Section ``detect_faces``: the fields of :class:`~pipeline.video.faces.FaceConfig`."""

    detector: Literal["mtcnn", "mtcnn_torch", "dlib"]
    fps: PosFloat | None  # None = every frame
    min_face_px: PosInt
    dlib_landmarks: Literal[5, 68]
    dlib_upsample: NonNegInt
    align: Literal["similarity", "crop"]
    crop_margin: NonNegFloat
    size_px: Annotated[Int, Field(ge=8)]
    track: Literal["nearest", "largest"]
    fill: Literal["zeros", "last"]
    batch_size: PosInt
    images: Literal["aligned", "detect"]


class ExtractAudioSection(Section):
    """Section ``extract_audio``."""

    rate_hz: AudioRate


class SeparateVocalsSection(Section):
    """Section ``separate_vocals``: ``method: none`` skips separation (ablation)."""

    method: Literal["spleeter", "none"]
    chunk_s: PosFloat
    overlap_s: NonNegFloat

    @model_validator(mode="after")
    def _overlap_fits(self) -> SeparateVocalsSection:
        if not self.overlap_s < self.chunk_s / 2:
            raise _error(
                "overlap_s",
                f"must be < chunk_s / 2 = {self.chunk_s / 2:g} (got {self.overlap_s:g})",
            )
        return self


class ResampleLabelsSection(Section):
    """Section ``resample_labels``."""

    min_frames_per_bin: PosInt  # a 5 Hz bin needs this many annotated frames, else -1/NaN


class Backbone(Section):
    """One entry of ``embed_faces.backbones`` / ``embed_audio.backbones``."""

    weights: Str | None  # a checkpoint path, or None for the built-in weights


class FaceBackboneEntry(Backbone):
    """One entry of ``embed_faces.backbones``: weights and feature enhancement."""

    # none | mean | meanstd | normfft: aggregate 18 rotated/scaled/flipped views of each
    # face (pipeline.embed.enhance); meanstd doubles the embedding size
    enhance: Literal["none", "mean", "meanstd", "normfft"]


class EmbedFacesSection(Section):
    """Section ``embed_faces``: backbones (name -> {weights, enhance}) and batch size."""

    batch_size: PosInt
    backbones: dict[FaceBackbone, FaceBackboneEntry]


class FinetuneFacesSection(Section):
    """Section ``finetune_faces`` (see pipeline.embed.finetune.FineTuneConfig)."""

    epochs: PosInt
    batch_size: PosInt
    lr: LearningRate
    weight_decay: NonNegFloat
    class_weight_r: PosFloat
    thinning: dict[Str, PosInt]  # class name -> keep every n-th frame (absent: 1, keep all)
    rotation_deg: Annotated[Float, Field(ge=0, le=180)]
    flip: Bool
    brightness: PosSpan
    hidden: PosInt
    dropout: OpenFraction
    oof_folds: Folds  # train videos embedded out of fold: k folds by video; 0 = off


class FER2013Training(Section):
    """The keys of a VGG face network trained on FER-2013 (``pretrain_faces``,
    ``distil_faces``)."""

    channels: Annotated[tuple[PosInt, ...], Field(min_length=1)]  # per VGG block; last = dim
    dropout: OpenFraction
    epochs: PosInt
    patience: PosInt
    lr: LearningRate
    weight_decay: NonNegFloat
    batch_size: PosInt
    max_train: PosInt | None  # a seeded subset of the Training rows; null = all
    precision: Precision  # training arithmetic: fp32, or bf16 autocast (avx512_bf16/AMX, GPUs)


class PretrainFacesSection(FER2013Training):
    """Section ``pretrain_faces``: seed 003's VGG face model trained on FER-2013."""

    root: Str  # folder holding fer2013.csv(.gz); without one the stage writes a skip record
    label_smoothing: OpenFraction  # of the training cross-entropy (0 = plain targets)
    rotate_deg: Annotated[Float, Field(ge=0, le=180)]  # training faces rotated by +- this
    scale: OpenFraction  # training faces zoomed by a factor in 1 +- this


class DistilFacesSection(FER2013Training):
    """Section ``distil_faces``: seed 002's face student, distilled on FER-2013 (the table
    of ``pretrain_faces.root``) from face backbones."""

    teachers: Annotated[
        tuple[FaceBackbone, ...], Field(min_length=1), AfterValidator(_distinct)
    ]  # targets: each one's l2-normalised embedding, concatenated in this order
    distance: NonNegFloat  # weight of the RKD distance loss
    angle: NonNegFloat  # weight of the RKD angle loss

    @field_validator("teachers")
    @classmethod
    def _not_itself(cls, teachers: tuple[str, ...]) -> tuple[str, ...]:
        if "distilled_fer" in teachers:
            raise ValueError("the student (distilled_fer) cannot be its own teacher")
        return teachers


class PretrainAudioSection(Section):
    """Section ``pretrain_audio``: seed 003's raw-audio model trained on EmoDB."""

    root: Str  # EmoDB folder (wav/*.wav); without wav files the stage writes a skip record
    dev_speakers: tuple[SpeakerCode, ...]  # pick the epoch
    test_speakers: tuple[SpeakerCode, ...]  # reported only
    segment_s: PosFloat  # the paper: 2 s
    kernel_ms: PosFloat
    filters: PosInt
    pools: Annotated[tuple[PosInt, ...], Field(min_length=1)]
    lstm_hidden: PosInt
    dropout: OpenFraction
    epochs: PosInt
    patience: PosInt
    lr: LearningRate
    weight_decay: NonNegFloat
    batch_size: PosInt
    augment: Bool  # circular shift + noise (pipeline.models.audio_cnn_lstm.augment_waveforms)


class PretrainVGGishSection(Section):
    """Section ``pretrain_vggish``: seed 002's VGGish (sequence geometry) trained on EmoDB."""

    root: Str  # EmoDB folder (wav/*.wav); without wav files the stage writes a skip record
    dev_speakers: tuple[SpeakerCode, ...]  # pick the epoch
    test_speakers: tuple[SpeakerCode, ...]  # reported only
    segment_s: Annotated[Float, Field(ge=0.7)]  # >= 16 frames of 40 ms (one embedding)
    dropout: OpenFraction
    epochs: PosInt
    patience: PosInt
    lr: LearningRate
    weight_decay: NonNegFloat
    batch_size: PosInt


class EmbedAudioSection(Section):
    """Section ``embed_audio``: which audio (vocals or original) and which backbones."""

    source: Source
    batch_size: PosInt
    backbones: dict[AudioBackbone, Backbone]


class WindowStatsKeys(Section):
    """The keys of section ``window_stats`` that the stage reads."""

    window_s: PosFloat
    overlap: OpenFraction
    min_valid_frac: Fraction


class WindowStatsSection(WindowStatsKeys):
    """Section ``window_stats``; ``features`` (name -> embedding file) drives DVC's foreach."""

    features: Annotated[dict[Str, Str], Field(min_length=1)]


class FitSVMSection(Section):
    """Section ``fit.svm``: the paper's best setting is poly, gamma 0.1, C 3, r 0.47."""

    C: PosFloat
    kernel: Literal["poly", "rbf", "linear"]
    gamma: Gamma
    degree: PosInt
    class_weight_r: PosFloat | None  # None: no class weights
    max_train: Annotated[Int, Field(ge=2)] | None  # a seeded subset of the training windows


class FitKELMSection(Section):
    """Section ``fit.kelm``: kernel ELM; ``approximation: nystroem`` bounds memory."""

    C: PosFloat
    kernel: Literal["rbf", "linear"]
    gamma: Gamma
    class_weight: Literal["log", "balanced"] | None
    class_weight_r: PosFloat
    approximation: Literal["nystroem"] | None
    n_components: PosInt
    max_train: Annotated[Int, Field(ge=2)] | None


class FitLSTMSection(Section):
    """Section ``fit.lstm``: LSTM over sequences of ``seq_len`` windows (seq2seq)."""

    hidden: PosInt
    layers: PosInt
    dropout: OpenFraction
    epochs: PosInt
    lr: LearningRate
    batch_size: PosInt
    patience: PosInt
    seq_len: PosInt
    class_weight_r: PosFloat


class FitSection(Section):
    """Section ``fit``: the model x feature matrix and one sub-section per model."""

    models: Annotated[tuple[FitModel, ...], Field(min_length=1), AfterValidator(_distinct)]
    features: Names  # keys of window_stats.features
    oof_folds: Folds  # out-of-fold train scores for fusion: k folds by fuse.cv_group; 0 = off
    svm: FitSVMSection
    kelm: FitKELMSection
    lstm: FitLSTMSection


class CnnLstmRawParams(Section):
    """``fit_raw_audio.nets.cnn_lstm_raw``: seed 000's 1D CNN + LSTM (model 4)."""

    pretrained: Bool  # start from models/pretrain_audio/model.pt (seed 003's net) instead
    filterbank: Literal["gabor", "learned"]  # the first layer's start (AudioCNNLSTM)


class SpecAttentionParams(Section):
    """``fit_raw_audio.nets.spec_attention``: seed 001's spectrogram CNN with attention over
    its feature-map positions (pipeline.models.spec_attention.SpecAttentionNet)."""

    front_end: Literal["spectrogram", "logmel"]
    attention: Literal["self", "relation", "transformer"]
    channels: Annotated[tuple[PosInt, ...], Field(min_length=1, max_length=6)]
    dropout: OpenFraction
    attention_hidden: PosInt


def _kind_by_keys(table: dict[str, type[Section]], hyper: Any) -> str | None:
    """Which entry of ``table`` the hyper-parameters ``hyper`` belong to: the one whose keys
    it shares most (so that a typo is reported against that network's keys only)."""
    if not isinstance(hyper, dict):
        return next((n for n, m in table.items() if isinstance(hyper, m)), None)
    return max(table, key=lambda n: len(set(hyper) & set(table[n].model_fields)))


def _hyper_union(table: dict[str, type[Section]]) -> Any:
    """The type of one ``nets`` entry: any model of ``table``, told apart by its keys."""
    members = tuple(Annotated[model, Tag(name)] for name, model in table.items())
    return Annotated[typing.Union[members], Discriminator(lambda h: _kind_by_keys(table, h))]


def _check_nets(nets: dict[str, Section], table: dict[str, type[Section]]) -> None:
    """Each entry of ``nets`` holds the keys of its own network's model in ``table``."""
    for name, hyper in nets.items():
        if not isinstance(hyper, table[name]):
            raise _error(f"nets.{name}", f"must hold the keys of {table[name].__name__}")


# The hyper-parameters of a raw-audio network; a new network adds its model here and above.
_RAW_NET_HYPER: dict[str, type[Section]] = {
    "cnn_lstm_raw": CnnLstmRawParams,
    "spec_attention": SpecAttentionParams,
}
RawAudioNetHyper = _hyper_union(_RAW_NET_HYPER)


class FitRawAudioSection(Section):
    """Section ``fit_raw_audio``: networks on raw audio windows (paper: 4 s, overlap 2/5)."""

    source: Source
    window_s: PosFloat
    overlap: OpenFraction
    epochs: PosInt
    lr: LearningRate
    batch_size: PosInt
    patience: PosInt
    class_weight_r: PosFloat
    augment: bool
    spec_masks: NonNegInt
    cosine: bool
    ema: Annotated[Float, Field(gt=0, lt=1)] | None  # null = off
    select: Literal["loss", "uar"]  # the dev measure that keeps an epoch and stops early
    nets: Annotated[dict[RawAudioNetName, RawAudioNetHyper], Field(min_length=1)]

    @model_validator(mode="after")
    def _nets(self) -> FitRawAudioSection:
        _check_nets(self.nets, _RAW_NET_HYPER)
        return self


class FitFeatureFusionSection(Section):
    """Section ``fit_feature_fusion``: seed 003's end-to-end feature-level fusion network."""

    source: Source
    segment_s: PosFloat  # the paper: 2 s
    overlap: OpenFraction
    faces_per_segment: PosInt
    pretrained: Bool  # start both branches from the pretrain checkpoints that were trained
    freeze_blocks: NonNegInt  # conv blocks of each pre-trained branch kept fixed
    hidden: PosInt
    dropout: OpenFraction
    epochs: PosInt
    patience: PosInt
    lr: LearningRate
    batch_size: PosInt
    class_weight_r: PosFloat


class ConvLSTMNetParams(Section):
    """One entry of ``fit_fusion_net.nets``: seed 002's conv pre-transform + LSTM network
    (pipeline.models.conv_lstm_fusion.ConvLSTMFusionNet; the paper: 64, [1, 3, 5], 3, 256, 2)."""

    channels: PosInt
    kernels: Annotated[tuple[PosInt, ...], Field(min_length=1)]
    pool: PosInt
    lstm_hidden: PosInt
    lstm_layers: PosInt
    dropout: OpenFraction

    @field_validator("kernels")
    @classmethod
    def _odd(cls, kernels: tuple[int, ...]) -> tuple[int, ...]:
        if any(k % 2 == 0 for k in kernels):
            raise ValueError("kernel sizes must be odd (padding keeps the number of steps)")
        return kernels


class AttentionFBPNetParams(Section):
    """One entry of ``fit_fusion_net.nets``: seed 001's attention pooling + factorized bilinear
    pooling network (pipeline.models.attention_fbp.AttentionFBPNet)."""

    visual_attention: Literal["self", "relation", "transformer"]
    audio_attention: Literal["self", "relation", "transformer"]
    fusion: Literal["fbp", "concat"]
    fbp_k: PosInt
    fbp_out: PosInt
    dropout: OpenFraction
    hidden: PosInt | None  # a per-bin FC + ReLU before the attention; null = none
    attention_hidden: PosInt
    input_norm: bool
    power_norm: bool


# The hyper-parameters of any fusion network; a new network adds its model here and above.
_NET_HYPER: dict[str, type[Section]] = {
    "conv_lstm": ConvLSTMNetParams,
    "attention_fbp": AttentionFBPNetParams,
}
FusionNetHyper = _hyper_union(_NET_HYPER)


class FitFusionNetSection(Section):
    """Section ``fit_fusion_net``: model-level fusion networks on face + audio embeddings."""

    faces: Annotated[Str, Field(pattern=r"^faces/[A-Za-z0-9_]+$")]  # faces/<backbone>
    audio: Annotated[Str, Field(pattern=r"^audio/[A-Za-z0-9_]+$")]  # audio/<backbone>
    seq_len: PosInt  # window length in 5 Hz bins (the paper: 27)
    hop: PosInt  # bins between window starts
    epochs: PosInt
    lr: LearningRate
    batch_size: Annotated[Int, Field(ge=2)]  # CCC (base.task va) needs two items per batch
    patience: PosInt
    class_weight_r: PosFloat
    nets: dict[FusionNetName, FusionNetHyper]  # name -> hyper-parameters (dvc foreach)

    @model_validator(mode="after")
    def _nets(self) -> FitFusionNetSection:
        _check_nets(self.nets, _NET_HYPER)
        for name, hyper in self.nets.items():
            if self.seq_len < getattr(hyper, "pool", 1):
                raise _error("seq_len", f"must be >= nets.{name}.pool (got {self.seq_len})")
        return self


class FuseSection(Section):
    """Section ``fuse``: which models enter fusion, the Dirichlet random search, and how
    fusion is judged (cross-validation over dev groups) and regularised."""

    models: Names  # fitted model names (<model>_<feature>), or [all]
    n_draws: NonNegInt
    concentration: PosFloat
    cv_folds: Annotated[Int, Field(ge=2)]  # capped at the number of dev groups
    cv_group: Literal["speaker", "video"]
    shrinkage: Annotated[tuple[Fraction, ...], Field(min_length=1)]  # tried by CV
    choice_se: NonNegFloat  # one-standard-error rule; 0 = best cross-validated score
    rule: Literal["auto", "single", "uniform", "swf", "mcwf"]  # auto = the CV choice
    smooth_bins: NonNegInt  # centred moving average of every model's scores; 0 or 1 = off
    entropy_gate: Annotated[Float, Field(gt=0, le=1)] | None  # expr only; null = off


class EvaluateSection(Section):
    """Section ``evaluate``."""

    timeline_videos: NonNegInt  # score-timeline figures for the first n videos


class ParamsFile(Section):
    """The whole of ``params.yaml``; an unknown section or key anywhere is an error."""

    base: BaseParams
    get_pretrained: GetPretrainedParams
    make_demo: MakeDemoSection
    build_manifest: BuildManifestSection
    detect_faces: DetectFacesSection
    extract_audio: ExtractAudioSection
    separate_vocals: SeparateVocalsSection
    resample_labels: ResampleLabelsSection
    embed_faces: EmbedFacesSection
    finetune_faces: FinetuneFacesSection
    pretrain_faces: PretrainFacesSection
    distil_faces: DistilFacesSection
    pretrain_audio: PretrainAudioSection
    pretrain_vggish: PretrainVGGishSection
    embed_audio: EmbedAudioSection
    window_stats: WindowStatsSection
    fit: FitSection
    fit_raw_audio: FitRawAudioSection
    fit_fusion_net: FitFusionNetSection
    fit_feature_fusion: FitFeatureFusionSection
    fuse: FuseSection
    evaluate: EvaluateSection

    @model_validator(mode="after")
    def _across_sections(self) -> ParamsFile:
        classes = [c.lower() for c in self.base.classes]
        stray = sorted(k for k in self.finetune_faces.thinning if k.lower() not in classes)
        if stray:
            raise _error(
                "finetune_faces.thinning",
                f"keys {stray} not in base.classes {list(self.base.classes)}",
            )
        missing = [f for f in self.fit.features if f not in self.window_stats.features]
        if missing:
            raise _error(
                "fit.features",
                f"{missing} not in window_stats.features "
                f"{list(self.window_stats.features)} (dvc foreach)",
            )
        if self.fit_fusion_net.nets:
            self._fusion_net_inputs()
        if self.base.task == "va" and self.fuse.entropy_gate is not None:
            raise _error(
                "fuse.entropy_gate",
                "must be null for base.task va (the gate needs class probabilities)",
            )
        if self.fuse.models != ("all",):
            produced = pipeline_models(
                self.fit.models,
                self.fit.features,
                tuple(self.fit_fusion_net.nets),
                tuple(self.fit_raw_audio.nets),
            )
            unknown = sorted(set(self.fuse.models) - set(produced))
            if unknown or len(self.fuse.models) < 2:
                raise _error(
                    "fuse.models",
                    f"must be [all] or >= 2 of the pipeline's models "
                    f"{produced} (got {list(self.fuse.models)})",
                )
        return self

    def _fusion_net_inputs(self) -> None:
        """fit_fusion_net.faces / .audio must be embedding files the pipeline makes."""
        backbone = self.fit_fusion_net.faces.split("/")[1]
        made = [*self.embed_faces.backbones, "finetuned"]
        if backbone not in made:
            raise _error(
                "fit_fusion_net.faces", f"{backbone!r} is not made (embed_faces.backbones {made})"
            )
        backbone = self.fit_fusion_net.audio.split("/")[1]
        made = list(self.embed_audio.backbones)
        if backbone not in made:
            raise _error(
                "fit_fusion_net.audio", f"{backbone!r} is not made (embed_audio.backbones {made})"
            )


# Stage views: a section plus the base keys (and other sections' keys) the stage reads.


class MakeDemoParams(MakeDemoSection):
    """``make_demo`` plus base.seed and build_manifest.adapter (the demo is made only for
    the ``demo`` adapter)."""

    seed: Seed
    adapter: str


class BuildManifestParams(BuildManifestSection):
    """``build_manifest`` plus base.seed, task, classes, n_jobs."""

    seed: Seed
    task: Task
    classes: Classes
    n_jobs: NJobs


class DetectFacesParams(DetectFacesSection):
    """``detect_faces`` plus base.device (for ``mtcnn_torch``), n_jobs, executor."""

    device: Device
    n_jobs: NJobs
    executor: Executor
    dask_scheduler: str | None

    def face_config(self) -> FaceConfig:
        """The library config (without n_jobs, which does not change results)."""
        names = [f.name for f in dataclasses.fields(FaceConfig)]
        return FaceConfig(**{name: getattr(self, name) for name in names})


class ExtractAudioParams(ExtractAudioSection):
    """``extract_audio`` plus base.n_jobs."""

    n_jobs: NJobs
    executor: Executor
    dask_scheduler: str | None


class SeparateVocalsParams(SeparateVocalsSection):
    """``separate_vocals`` plus base.n_jobs."""

    n_jobs: NJobs
    executor: Executor
    dask_scheduler: str | None


class ResampleLabelsParams(ResampleLabelsSection):
    """``resample_labels`` plus base.task, classes, label_rate_hz."""

    task: Task
    classes: Classes
    label_rate_hz: PosFloat


class EmbedFacesParams(EmbedFacesSection):
    """``embed_faces`` plus base.device, n_jobs, executor."""

    device: Device
    n_jobs: NJobs
    executor: Executor
    dask_scheduler: str | None


class FinetuneFacesParams(FinetuneFacesSection):
    """``finetune_faces`` plus base.seed, classes, label_rate_hz, device, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    device: Device
    task: Task

    def train_config(self):
        """The library config; ``thinning`` becomes one step per class of base.classes."""
        from pipeline.embed.finetune import FineTuneConfig  # imports torch: only when needed

        steps = {name.lower(): step for name, step in self.thinning.items()}
        return FineTuneConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            class_weight_r=self.class_weight_r,
            thinning=tuple(steps.get(c.lower(), 1) for c in self.classes),
            rotation_deg=self.rotation_deg,
            flip=self.flip,
            brightness=self.brightness,
            hidden=self.hidden,
            dropout=self.dropout,
        )


class EmbedAudioParams(EmbedAudioSection):
    """``embed_audio`` plus base.device, label_rate_hz, executor."""

    device: Device
    label_rate_hz: PosFloat
    executor: Executor
    dask_scheduler: str | None


class WindowStatsParams(WindowStatsKeys):
    """``window_stats`` keys window_s, overlap, min_valid_frac plus base.label_rate_hz, classes."""

    label_rate_hz: PosFloat
    classes: Classes


class OutOfFoldKeys(Section):
    """fit.oof_folds and fuse.cv_group (as oof_group), read by every fitter that can score
    the train videos out of fold."""

    oof_folds: NonNegInt
    oof_group: Literal["speaker", "video"]


class FitSVMParams(FitSVMSection, OutOfFoldKeys):
    """``fit.svm`` plus fit.oof_folds, fuse.cv_group (as oof_group) and base.seed,
    classes, label_rate_hz, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    task: Task


class FitKELMParams(FitKELMSection, OutOfFoldKeys):
    """``fit.kelm`` plus fit.oof_folds, fuse.cv_group (as oof_group) and base.seed,
    classes, label_rate_hz, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    task: Task


class FitLSTMParams(FitLSTMSection, OutOfFoldKeys):
    """``fit.lstm`` plus fit.oof_folds, fuse.cv_group (as oof_group) and base.seed,
    classes, label_rate_hz, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    task: Task


class FitRawAudioParams(FitRawAudioSection, OutOfFoldKeys):
    """``fit_raw_audio`` plus fit.oof_folds, fuse.cv_group (as oof_group) and base.seed,
    classes, label_rate_hz, device, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    device: Device
    task: Task


class FitFusionNetParams(FitFusionNetSection):
    """``fit_fusion_net`` plus base.seed, classes, label_rate_hz, device, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    device: Device
    task: Task


class PretrainFacesParams(PretrainFacesSection):
    """``pretrain_faces`` plus base.seed, device."""

    seed: Seed
    device: Device


class DistilFacesParams(DistilFacesSection):
    """``distil_faces`` plus base.seed, device."""

    seed: Seed
    device: Device


class PretrainAudioParams(PretrainAudioSection):
    """``pretrain_audio`` plus base.seed, device and extract_audio.rate_hz (the rate the
    network's kernels are sized for: the pipeline's audio rate)."""

    seed: Seed
    device: Device
    rate_hz: AudioRate


class PretrainVGGishParams(PretrainVGGishSection):
    """``pretrain_vggish`` plus base.seed, device."""

    seed: Seed
    device: Device


class FitFeatureFusionParams(FitFeatureFusionSection):
    """``fit_feature_fusion`` plus base.seed, classes, label_rate_hz, device, task."""

    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    device: Device
    task: Task


class FuseParams(FuseSection):
    """``fuse`` plus fit.models, fit.features, fit_fusion_net.nets, fit_raw_audio.nets and
    base.seed, classes, label_rate_hz, task."""

    fit_models: tuple[FitModel, ...]
    fit_features: tuple[Str, ...]
    fit_nets: dict[FusionNetName, FusionNetHyper]
    fit_raw_nets: dict[RawAudioNetName, RawAudioNetHyper]
    seed: Seed
    classes: Classes
    label_rate_hz: PosFloat
    task: Task

    def fusion_config(self):
        """The library config (pipeline.fusion.FusionConfig)."""
        from pipeline.fusion import FusionConfig  # imports sklearn: only when needed

        names = [f.name for f in dataclasses.fields(FusionConfig)]
        return FusionConfig(**{name: getattr(self, name) for name in names})


class EvaluateParams(EvaluateSection):
    """``evaluate`` plus fit.models, fit.features, fit_fusion_net.nets, fit_raw_audio.nets
    and base.classes, label_rate_hz, task."""

    fit_models: tuple[FitModel, ...]
    fit_features: tuple[Str, ...]
    fit_nets: dict[FusionNetName, FusionNetHyper]
    fit_raw_nets: dict[RawAudioNetName, RawAudioNetHyper]
    classes: Classes
    label_rate_hz: PosFloat
    task: Task


# stage name -> (model, base keys it reads). Keep in step with dvc.yaml `params:`.
STAGES: dict[str, tuple[type[Section], tuple[str, ...]]] = {
    "get_pretrained": (GetPretrainedParams, ()),
    "make_demo": (MakeDemoParams, ("seed",)),
    "build_manifest": (BuildManifestParams, ("seed", "task", "classes", "n_jobs")),
    "detect_faces": (DetectFacesParams, ("device", "n_jobs", "executor", "dask_scheduler")),
    "extract_audio": (ExtractAudioParams, ("n_jobs", "executor", "dask_scheduler")),
    "separate_vocals": (SeparateVocalsParams, ("n_jobs", "executor", "dask_scheduler")),
    "resample_labels": (ResampleLabelsParams, ("task", "classes", "label_rate_hz")),
    "embed_faces": (EmbedFacesParams, ("device", "n_jobs", "executor", "dask_scheduler")),
    "finetune_faces": (
        FinetuneFacesParams,
        ("seed", "classes", "label_rate_hz", "device", "task"),
    ),
    "pretrain_faces": (PretrainFacesParams, ("seed", "device")),
    "distil_faces": (DistilFacesParams, ("seed", "device")),
    "pretrain_audio": (PretrainAudioParams, ("seed", "device")),
    "pretrain_vggish": (PretrainVGGishParams, ("seed", "device")),
    "embed_audio": (
        EmbedAudioParams,
        ("device", "label_rate_hz", "executor", "dask_scheduler"),
    ),
    "window_stats": (WindowStatsParams, ("label_rate_hz", "classes")),
    # the `fit` matrix stage loads fit.<model> for its model
    "fit.svm": (FitSVMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit.kelm": (FitKELMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit.lstm": (FitLSTMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit_raw_audio": (FitRawAudioParams, ("seed", "classes", "label_rate_hz", "device", "task")),
    "fit_fusion_net": (
        FitFusionNetParams,
        ("seed", "classes", "label_rate_hz", "device", "task"),
    ),
    "fit_feature_fusion": (
        FitFeatureFusionParams,
        ("seed", "classes", "label_rate_hz", "device", "task"),
    ),
    "fuse": (FuseParams, ("seed", "classes", "label_rate_hz", "task")),
    "evaluate": (EvaluateParams, ("classes", "label_rate_hz", "task")),
}
# Keys a stage reads from other stages' sections: field -> "section.key". `fuse` and
# `evaluate` need the fit matrix and the fusion networks to know which models the pipeline
# produces.
_PRODUCED = {
    "fit_models": "fit.models",
    "fit_features": "fit.features",
    "fit_nets": "fit_fusion_net.nets",
    "fit_raw_nets": "fit_raw_audio.nets",
}
_OUT_OF_FOLD = {"oof_folds": "fit.oof_folds", "oof_group": "fuse.cv_group"}
OTHER_KEYS: dict[str, dict[str, str]] = {
    "fit.svm": _OUT_OF_FOLD,
    "fit.kelm": _OUT_OF_FOLD,
    "fit.lstm": _OUT_OF_FOLD,
    "fit_raw_audio": _OUT_OF_FOLD,
    "fuse": _PRODUCED,
    "evaluate": _PRODUCED,
    "make_demo": {"adapter": "build_manifest.adapter"},
    "pretrain_audio": {"rate_hz": "extract_audio.rate_hz"},
}
# Stages that read only some keys of their section (the others drive DVC's foreach/matrix);
# dvc.yaml declares exactly these keys, so editing the others re-runs nothing here.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "window_stats": tuple(WindowStatsKeys.model_fields),
}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a params file; a missing or malformed file is a ParamsError naming it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_file(path: str | Path = "params.yaml") -> ParamsFile:
    """The whole params file, validated.

    Raises
    ------
    ParamsError
        One line naming the file and the dotted param of each problem found.
    """
    return _validate(ParamsFile, read_yaml(path), path)


def load_base(path: str | Path = "params.yaml") -> BaseParams:
    """The whole ``base`` section (for tools and tests; stages use :func:`load_params`)."""
    return load_file(path).base


def load_params(stage: str, path: str | Path = "params.yaml") -> Any:
    """Typed params of ``stage``: its section plus the base keys it declares.

    The whole file is validated first, so a bad value in any section stops every stage.

    Raises
    ------
    ParamsError
        Unknown stage; unknown, missing or invalid key anywhere in the file.
    """
    if stage not in STAGES:
        raise ParamsError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    cls, base_keys = STAGES[stage]
    params = load_file(path)
    section: Any = params
    for part in stage.split("."):
        section = getattr(section, part)
    keys = SECTION_KEYS.get(stage, tuple(type(section).model_fields))
    values = {key: getattr(section, key) for key in keys}
    for field_name, dotted in OTHER_KEYS.get(stage, {}).items():
        owner, key = dotted.split(".")
        values[field_name] = getattr(getattr(params, owner), key)
    values.update({key: getattr(params.base, key) for key in base_keys})
    return _validate(cls, values, path)


def declared_params(stage: str) -> list[str]:
    """The ``params:`` list ``dvc.yaml`` must declare for ``stage``."""
    _, base_keys = STAGES[stage]
    own = [f"{stage}.{k}" for k in SECTION_KEYS[stage]] if stage in SECTION_KEYS else [stage]
    return [f"base.{k}" for k in base_keys] + sorted(OTHER_KEYS.get(stage, {}).values()) + own


def _validate(cls: type[Section], data: dict[str, Any], path: str | Path) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ParamsError(f"{path}: {describe(err, cls)}") from None


# Requirement phrases for pydantic's error types ("must be <phrase> (got <input>)").
_MUST_BE = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "greater_than": "> {gt}",
    "greater_than_equal": ">= {ge}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "literal_error": "{expected}",
    "string_too_short": "a non-empty string",
}


def describe(err: ValidationError, root: type[BaseModel] = ParamsFile, limit: int = 3) -> str:
    """One line for a pydantic ``ValidationError``: ``dotted.param: problem`` per error.

    Parameters
    ----------
    err : ValidationError
        Raised by validating ``root``.
    root : pydantic model class
        The model validated, to tell params keys from pydantic's union tags in ``loc``
        and to suggest the closest known key for an unknown one.
    limit : int
        Problems shown; the rest are counted.
    """
    musts: dict[str, list[str]] = {}  # dotted param -> requirement phrases (union members)
    lines: dict[str, str] = {}  # dotted param -> problem
    for e in err.errors():
        parts, node = _walk(root, e["loc"])
        path = _dotted(parts)
        ctx = {k: _number(v) for k, v in (e.get("ctx") or {}).items()}
        kind, got = e["type"], f" (got {_show(e['input'])})"
        if kind == "missing":  # a key, a section, or one value of a [low, high] pair
            what = "missing section" if len(parts) == 1 else "missing key"
            lines.setdefault(path, "missing value" if isinstance(parts[-1], int) else what)
        elif kind == "extra_forbidden":
            key = str(e["loc"][-1])
            lines.setdefault(_dotted(parts + [key]), "unknown key" + _hint(key, parts, node))
        elif kind == "params":  # a cross-field check: ctx names the key
            lines.setdefault(_dotted(parts + [ctx["key"]]), ctx["problem"])
        elif kind == "value_error":
            lines.setdefault(path, str(ctx["error"]) + got)
        elif kind == "too_short":
            n = ctx["min_length"]
            lines.setdefault(
                path, ("must not be empty" if n == 1 else f"must have at least {n} values") + got
            )
        elif kind == "too_long":
            lines.setdefault(path, f"must have at most {ctx['max_length']} values" + got)
        elif e["loc"] and e["loc"][-1] == "[key]":  # a name that is not allowed as a key
            lines.setdefault(path, f"unknown name (known: {ctx.get('expected')})")
        elif kind in _MUST_BE:
            musts.setdefault(path, []).append(_MUST_BE[kind].format(**ctx))
            lines.setdefault(path, got)
        else:
            lines.setdefault(path, e["msg"] + got)
    out = [
        f"{p}: must be {' or '.join(musts[p])}{text}" if p in musts else f"{p}: {text}"
        for p, text in lines.items()
    ]
    more = f"; and {len(out) - limit} more" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[Any], Any]:
    """The params path in ``loc`` (model keys, mapping keys, list indices) and the schema
    node it reaches; the walk stops at what is not a params key (an unknown key, a union
    member's tag, a mapping's ``[key]``)."""
    node: Any = root
    parts: list[Any] = []
    for part in loc:
        node = _unwrap(node)
        tagged = _tagged_member(node, part)
        if tagged is not None:  # a tagged union's tag: not a params key
            node = tagged
            continue
        if isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) is dict and part != "[key]":
            node = typing.get_args(node)[1]
        elif typing.get_origin(node) is tuple and isinstance(part, int):
            args = typing.get_args(node)
            node = args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)]
        else:
            break
        parts.append(part)
    return parts, _unwrap(node)


def _tagged_member(tp: Any, part: Any) -> Any:
    """The member of tagged union ``tp`` whose ``Tag`` is ``part`` (None if there is none)."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    for member in typing.get_args(tp):
        meta = typing.get_args(member)[1:] if typing.get_origin(member) is Annotated else ()
        if any(isinstance(m, Tag) and m.tag == part for m in meta):
            return typing.get_args(member)[0]
    return None


def _unwrap(tp: Any) -> Any:
    """``tp`` without ``Annotated`` metadata and without ``| None``."""
    while True:
        args = typing.get_args(tp)
        if typing.get_origin(tp) is Annotated:
            tp = args[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _dotted(parts: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _hint(key: str, parts: list[Any], node: Any) -> str:
    if parts and parts != ["base"] and key in BaseParams.model_fields:
        return f" (base.{key} is shared: set it in base only)"
    is_model = isinstance(node, type) and issubclass(node, BaseModel)
    close = difflib.get_close_matches(key, list(node.model_fields) if is_model else [], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _number(value: Any) -> Any:
    """0.0 -> 0 in messages (pydantic turns int bounds of float fields into floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "OTHER_KEYS",
    "SECTION_KEYS",
    "STAGES",
    "BaseParams",
    "ParamsFile",
    "declared_params",
    "describe",
    "load_base",
    "load_file",
    "load_params",
    "read_yaml",
]
