"""Typed, validated access to ``params.yaml``: one dataclass per stage.

``load_params(stage, path)`` returns the stage's dataclass built from its own section
plus the ``base`` keys it declares in :data:`STAGES`. Nothing else is reachable, and
``tests/test_dvc_yaml.py`` checks that :data:`STAGES` matches the ``params:`` of each
stage in ``dvc.yaml``, so a stage can never read a param DVC does not track.

Unknown, missing or ill-typed keys raise :class:`~pipeline.errors.ParamsError` naming the
key (with a "did you mean" hint for misspellings).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ParamsError
from pipeline.video.faces import FaceConfig

Task = Literal["expr", "va"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class BaseParams:
    """Section ``base``: settings shared by several stages."""

    seed: int
    task: Task
    classes: tuple[str, ...]
    label_rate_hz: float
    device: Device
    n_jobs: int

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ParamsError("base.classes: need at least two distinct class names")
        if self.label_rate_hz <= 0:
            raise ParamsError("base.label_rate_hz: must be > 0")
        if self.n_jobs == 0 or self.n_jobs < -1:
            raise ParamsError("base.n_jobs: a positive count, or -1 for all cores")


@dataclass(frozen=True)
class GetPretrainedParams:
    """Section ``get_pretrained``: which shipped checkpoints to fetch (names in pipeline.pretrained)."""

    models: tuple[str, ...]


@dataclass(frozen=True)
class MakeDemoParams:
    """Section ``make_demo``: composition of the embedded demo dataset."""

    n_videos: int
    duration_s: tuple[float, float]
    fps_choices: tuple[float, ...]
    split_counts: dict[str, int]
    gap_prob: float
    gap_s: tuple[float, float]
    brightness: tuple[float, float]
    scale: tuple[float, float]
    shift_px: int
    gain_db: tuple[float, float]
    background_snr_db: tuple[float, float]
    audio_rate_hz: int
    seed: int  # from base

    def __post_init__(self) -> None:
        if self.n_videos < 1:
            raise ParamsError("make_demo.n_videos: must be >= 1")
        if sum(self.split_counts.values()) != self.n_videos:
            raise ParamsError("make_demo.split_counts: counts must add up to n_videos")
        if set(self.split_counts) - {"train", "dev", "test"}:
            raise ParamsError("make_demo.split_counts: keys are train, dev, test")
        for name in ("duration_s", "gap_s", "brightness", "scale", "gain_db", "background_snr_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ParamsError(f"make_demo.{name}: [low, high] with low <= high")
        if not 0.0 <= self.gap_prob <= 1.0:
            raise ParamsError("make_demo.gap_prob: a probability in [0, 1]")


@dataclass(frozen=True)
class BuildManifestParams:
    """Section ``build_manifest``: which dataset adapter reads the raw data."""

    adapter: Literal["demo", "affwild2", "crema_d", "csv"]
    root: str
    csv_file: str | None
    crema_media: Literal["video", "audio"]
    split_fractions: dict[str, float]
    max_label_mismatch_s: float
    strict: bool
    seed: int  # from base
    task: Task  # from base
    classes: tuple[str, ...]  # from base
    n_jobs: int  # from base


@dataclass(frozen=True)
class DetectFacesParams(FaceConfig):
    """Section ``detect_faces``: :class:`~pipeline.video.faces.FaceConfig` plus base.n_jobs."""

    n_jobs: int = 1  # from base

    def __post_init__(self) -> None:
        checks = {"detector": ("mtcnn", "dlib"), "align": ("similarity", "crop"),
                  "track": ("nearest", "largest"), "fill": ("zeros", "last"), "dlib_landmarks": (5, 68)}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ParamsError(f"detect_faces.{key}: {getattr(self, key)!r} is not one of {list(allowed)}")
        if self.fps is not None and self.fps <= 0:
            raise ParamsError("detect_faces.fps: null (every frame) or a positive rate")

    def face_config(self) -> FaceConfig:
        """The library config (without n_jobs, which does not change results)."""
        return FaceConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FaceConfig)})


@dataclass(frozen=True)
class ExtractAudioParams:
    """Section ``extract_audio``."""

    rate_hz: int
    n_jobs: int  # from base


@dataclass(frozen=True)
class SeparateVocalsParams:
    """Section ``separate_vocals``: ``method: none`` skips separation (ablation)."""

    method: Literal["spleeter", "none"]
    chunk_s: float
    overlap_s: float
    n_jobs: int  # from base

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_s < self.chunk_s / 2:
            raise ParamsError("separate_vocals.overlap_s: 0 <= overlap_s < chunk_s / 2")


@dataclass(frozen=True)
class ResampleLabelsParams:
    """Section ``resample_labels``."""

    min_frames_per_bin: int  # a 5 Hz bin needs this many annotated frames, else it is -1/NaN
    task: Task  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base


@dataclass(frozen=True)
class EmbedFacesParams:
    """Section ``embed_faces``: backbones (name -> {weights: path or null}) and batch size."""

    backbones: dict[str, dict[str, str | None]]
    batch_size: int
    device: Device  # from base
    n_jobs: int  # from base

    def __post_init__(self) -> None:
        known = {"fer_xception", "dlib_resnet", "vggface2_resnet50"}
        unknown = sorted(set(self.backbones) - known)
        if unknown:
            raise ParamsError(f"embed_faces.backbones: unknown {unknown}; known: {sorted(known)}")


@dataclass(frozen=True)
class FinetuneFacesParams:
    """Section ``finetune_faces`` (see pipeline.embed.finetune.FineTuneConfig)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    class_weight_r: float
    thinning: dict[str, int]  # class name -> keep every n-th frame
    rotation_deg: float
    flip: bool
    brightness: tuple[float, float]
    hidden: int
    dropout: float
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    device: Device  # from base
    task: Task  # from base

    def train_config(self):
        from pipeline.embed.finetune import FineTuneConfig

        every = tuple(int(self.thinning.get(c, 1)) for c in self.classes)
        return FineTuneConfig(self.epochs, self.batch_size, self.lr, self.weight_decay, self.class_weight_r,
                              every, self.rotation_deg, self.flip, self.brightness, self.hidden, self.dropout)


@dataclass(frozen=True)
class EmbedAudioParams:
    """Section ``embed_audio``: which audio (vocals or original) and which backbones."""

    source: Literal["vocals", "audio"]
    backbones: dict[str, dict[str, str | None]]
    batch_size: int
    device: Device  # from base
    label_rate_hz: float  # from base

    def __post_init__(self) -> None:
        known = {"logmel", "mfcc", "ge2e_lstm", "cnn14"}
        unknown = sorted(set(self.backbones) - known)
        if unknown:
            raise ParamsError(f"embed_audio.backbones: unknown {unknown}; known: {sorted(known)}")


@dataclass(frozen=True)
class WindowStatsParams:
    """Keys ``window_s``, ``overlap``, ``min_valid_frac`` of section ``window_stats``.

    ``window_stats.features`` (name -> embedding file) is read by DVC's ``foreach`` only.
    """

    window_s: float
    overlap: float
    min_valid_frac: float
    label_rate_hz: float  # from base
    classes: tuple[str, ...]  # from base

    def __post_init__(self) -> None:
        if self.window_s <= 0 or not 0 <= self.overlap < 1 or not 0 <= self.min_valid_frac <= 1:
            raise ParamsError("window_stats: window_s > 0, 0 <= overlap < 1, 0 <= min_valid_frac <= 1")


@dataclass(frozen=True)
class FitSVMParams:
    """Section ``fit.svm``: the paper's best setting is poly, gamma 0.1, C 3, r 0.47."""

    C: float
    kernel: Literal["poly", "rbf", "linear"]
    gamma: float
    degree: int
    class_weight_r: float | None
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    task: Task  # from base


@dataclass(frozen=True)
class FitKELMParams:
    """Section ``fit.kelm``: kernel ELM; ``approximation: nystroem`` bounds memory for large N."""

    C: float
    kernel: Literal["rbf", "linear"]
    gamma: float | str
    class_weight: str | None
    class_weight_r: float
    approximation: Literal["nystroem"] | None
    n_components: int
    max_train: int | None
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    task: Task  # from base


@dataclass(frozen=True)
class FitLSTMParams:
    """Section ``fit.lstm``: LSTM over sequences of ``seq_len`` windows (seq2seq)."""

    hidden: int
    layers: int
    dropout: float
    epochs: int
    lr: float
    batch_size: int
    patience: int
    seq_len: int
    class_weight_r: float
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    task: Task  # from base


@dataclass(frozen=True)
class FuseParams:
    """Section ``fuse``: which models enter fusion and the Dirichlet random search."""

    models: tuple[str, ...]  # fitted model names (<model>_<feature>), or [all]
    n_draws: int
    concentration: float
    fit_models: tuple[str, ...]  # from fit.models
    fit_features: tuple[str, ...]  # from fit.features
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    task: Task  # from base

    def __post_init__(self) -> None:
        if self.n_draws < 0 or self.concentration <= 0:
            raise ParamsError("fuse: n_draws >= 0 and concentration > 0")


@dataclass(frozen=True)
class EvaluateParams:
    """Section ``evaluate``."""

    timeline_videos: int  # score-timeline figures for the first n videos of the last split
    fit_models: tuple[str, ...]  # from fit.models
    fit_features: tuple[str, ...]  # from fit.features
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    task: Task  # from base


@dataclass(frozen=True)
class FitRawAudioParams:
    """Section ``fit_raw_audio``: the 1D CNN + LSTM on raw audio (paper: 4 s, overlap 2/5, lr 2.5e-4)."""

    source: Literal["vocals", "audio"]
    window_s: float
    overlap: float
    epochs: int
    lr: float
    batch_size: int
    patience: int
    class_weight_r: float
    seed: int  # from base
    classes: tuple[str, ...]  # from base
    label_rate_hz: float  # from base
    device: Device  # from base
    task: Task  # from base


# stage name -> (dataclass, base keys it reads). Keep in step with dvc.yaml `params:`.
STAGES: dict[str, tuple[type, tuple[str, ...]]] = {
    "get_pretrained": (GetPretrainedParams, ()),
    "make_demo": (MakeDemoParams, ("seed",)),
    "build_manifest": (BuildManifestParams, ("seed", "task", "classes", "n_jobs")),
    "detect_faces": (DetectFacesParams, ("n_jobs",)),
    "extract_audio": (ExtractAudioParams, ("n_jobs",)),
    "separate_vocals": (SeparateVocalsParams, ("n_jobs",)),
    "resample_labels": (ResampleLabelsParams, ("task", "classes", "label_rate_hz")),
    "embed_faces": (EmbedFacesParams, ("device", "n_jobs")),
    "finetune_faces": (FinetuneFacesParams, ("seed", "classes", "label_rate_hz", "device", "task")),
    "embed_audio": (EmbedAudioParams, ("device", "label_rate_hz")),
    "window_stats": (WindowStatsParams, ("label_rate_hz", "classes")),
    # the `fit` matrix stage loads fit.<model> for its model
    "fit.svm": (FitSVMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit.kelm": (FitKELMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit.lstm": (FitLSTMParams, ("seed", "classes", "label_rate_hz", "task")),
    "fit_raw_audio": (FitRawAudioParams, ("seed", "classes", "label_rate_hz", "device", "task")),
    "fuse": (FuseParams, ("seed", "classes", "label_rate_hz", "task")),
    "evaluate": (EvaluateParams, ("classes", "label_rate_hz", "task")),
}
# Keys a stage reads from other stages' sections: field -> "section.key". `fuse` and
# `evaluate` need the fit matrix to know which models the pipeline produces.
OTHER_KEYS: dict[str, dict[str, str]] = {
    "fuse": {"fit_models": "fit.models", "fit_features": "fit.features"},
    "evaluate": {"fit_models": "fit.models", "fit_features": "fit.features"},
}
# Stages that read only some keys of their section (the others drive DVC's foreach/matrix);
# dvc.yaml declares exactly these keys, so editing the others re-runs nothing here.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "window_stats": ("window_s", "overlap", "min_valid_frac"),
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


def load_base(path: str | Path = "params.yaml") -> BaseParams:
    """The whole ``base`` section (for tools and tests; stages use :func:`load_params`)."""
    return build(BaseParams, _section(read_yaml(path), "base", path), "base")


def load_params(stage: str, path: str | Path = "params.yaml") -> Any:
    """Typed params of ``stage``: its section plus the base keys it declares.

    Raises
    ------
    ParamsError
        Unknown stage, missing section, unknown/missing/ill-typed key.
    """
    if stage not in STAGES:
        raise ParamsError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    cls, base_keys = STAGES[stage]
    data = read_yaml(path)
    section = dict(_section(data, stage, path))
    if stage in SECTION_KEYS:
        section = {k: v for k, v in section.items() if k in SECTION_KEYS[stage]}
    for field_name, dotted in OTHER_KEYS.get(stage, {}).items():
        owner, key = dotted.rsplit(".", 1)
        other = _section(data, owner, path)
        if key not in other:
            raise ParamsError(f"{path}: {dotted} is missing (stage {stage} reads it)")
        section[field_name] = other[key]
    base = _section(data, "base", path)
    for key in base_keys:
        if key in section:
            raise ParamsError(f"{path}: {stage}.{key} shadows base.{key}; set it in base only")
        if key not in base:
            raise ParamsError(f"{path}: base.{key} is missing (stage {stage} reads it)")
        section[key] = base[key]
    # Validate the base keys with BaseParams' own types and checks.
    base_types = typing.get_type_hints(BaseParams)
    for key in base_keys:
        section[key] = _coerce(section[key], base_types[key], f"base.{key}")
    return build(cls, section, stage, require_all=True)


def declared_params(stage: str) -> list[str]:
    """The ``params:`` list ``dvc.yaml`` must declare for ``stage``."""
    _, base_keys = STAGES[stage]
    own = [f"{stage}.{k}" for k in SECTION_KEYS[stage]] if stage in SECTION_KEYS else [stage]
    return [f"base.{k}" for k in base_keys] + sorted(OTHER_KEYS.get(stage, {}).values()) + own


def _section(data: dict[str, Any], name: str, path: str | Path) -> dict[str, Any]:
    node: Any = data
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            hint = _hint(part, node if isinstance(node, dict) else {})
            raise ParamsError(f"{path}: section {name!r} is missing{hint}")
        node = node[part]
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ParamsError(f"{path}: section {name!r} must be a mapping")
    return node


def _hint(key: str, options: Any) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build(cls: type, values: dict[str, Any], where: str, require_all: bool = False) -> Any:
    """Instantiate dataclass ``cls`` from ``values`` with type coercion and clear errors.

    With ``require_all`` every field must be given, defaults notwithstanding: stage
    sections of params.yaml list every value, so DVC tracks all of them.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        key = unknown[0]
        raise ParamsError(f"{where}.{key}: unknown key{_hint(key, fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{where}.{name}")
        elif require_all or (f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING):
            raise ParamsError(f"{where}.{name}: missing key")
    try:
        return cls(**kwargs)
    except ParamsError:
        raise
    except (TypeError, ValueError) as err:
        raise ParamsError(f"{where}: {err}") from None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type ``tp`` (coercing lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamsError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")


__all__ = [
    "STAGES",
    "BaseParams",
    "build",
    "declared_params",
    "load_base",
    "load_params",
    "read_yaml",
]
