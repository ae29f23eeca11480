"""Emotions of new videos from the models the pipeline trained.

``python -m pipeline.predict VIDEO [VIDEO ...] --out DIR [--params params.yaml] [--models
models]``

Each video goes through the stages' own code, with the params of ``--params``: the probe of
``build_manifest``, the streamed face track of ``detect_faces``, ``extract_audio`` and
``separate_vocals``, the embeddings of every feature a fused model reads (``embed_faces``,
the ``finetune_faces`` network, ``embed_audio``), ``window_stats``' window features, the
fitted models of ``models/fit`` (the model-level fusion networks of ``fit_fusion_net`` read
the face and the audio embedding on the 5 Hz grid, with the code of
:mod:`pipeline.models.fusion_net`, and need only one usable modality) and the fusion rule
``fuse`` chose
(``models/fuse/choice.json``). The face track, audio and vocals go to a temporary folder in
the stages' HDF5 formats, so memory does not grow with the length of a video: decoded frames
are held one detector batch at a time and face crops are read back a chunk at a time.

Outputs per video, ``<stem>`` being the file name without its suffix:

- ``<stem>_frames.csv``: one row per decoded frame at the video's own rate (frame ``i`` at
  ``i / fps`` s, as the evaluation protocol counts frames): ``frame, time_s, face`` (a face was
  found at the last sampled frame at or before it; ``detect_faces.fps`` sets the sampling),
  one probability column per class and ``label`` (``valence, arousal`` for ``base.task: va``,
  no label). Probabilities are the fused 5 Hz scores held over each bin's frames, normalised
  to sum to 1 (model-and-class weighted fusion does not keep the sum; the argmax is unchanged).
- ``<stem>_5hz.csv``: the same on the 5 Hz grid (``bin, time_s`` at bin centres).
- ``<stem>_timeline.png``: per-class probabilities (or valence/arousal) over time, stretches
  without a face shaded.
- ``<stem>.json``: the models and the fusion used, which modality was usable and why not,
  per-class means, the dominant emotion and the seconds each step took.

A video without a usable face (no video stream, or no face found) or without usable audio
gets the models of the modality it has: the others are left out and the fusion weights are
renormalised over the rest (:func:`pipeline.fusion.restrict_weights`); the JSON and a log line
say which. With neither, every model gives its training prior, as the pipeline does for bins
no window covers. Within a video, bins a model's windows do not cover (a stretch without a
face) get its training prior, exactly as in ``fit`` and ``fuse``, so a dev or test video of
the pipeline gets the scores ``fuse`` wrote for it.

The model set is checked before any work (:func:`check_model_set`): missing files and models
made with other params than ``--params`` are one-line errors naming what to run.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError, PipelineError

log = logging.getLogger("pipeline.predict")

RAW_AUDIO = ("cnn_lstm_raw", "spec_attention")  # pipeline.scores.RAW_AUDIO_MODELS
FEATURE_FUSION = "feature_fusion"  # pipeline.scores.FEATURE_FUSION_MODEL
# backbones whose weights default to a pretrain stage's checkpoint, <models>/<stage>/model.pt
# (embed_faces --vgg-fer / --distilled, embed_audio --vggish-seq)
STAGE_CHECKPOINTS = {
    "vgg_fer": "pretrain_faces",
    "distilled_fer": "distil_faces",
    "vggish_seq": "pretrain_vggish",
}
RUN_HINT = "run `make demo` (the embedded demo) or `dvc repro` first"
STALE_HINT = (
    "run `dvc repro` to retrain them with these params, or pass the --params they were made with"
)


# ------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class PredictParams:
    """The params of every stage whose code predict runs (each stage's own view)."""

    path: Path
    detect_faces: Any
    extract_audio: Any
    separate_vocals: Any
    embed_faces: Any
    embed_audio: Any
    window_stats: Any
    features: dict[str, str]  # window_stats.features: feature -> embedding file under features/
    fit: dict[str, Any]  # classifier -> fit.<classifier> params
    fit_raw_audio: Any
    fit_fusion_net: Any
    fit_feature_fusion: Any
    fuse: Any

    @property
    def task(self) -> str:
        return self.fuse.task

    @property
    def classes(self) -> tuple[str, ...]:
        return self.fuse.classes

    @property
    def rate_hz(self) -> float:
        return self.fuse.label_rate_hz


def load_predict_params(path: str | Path) -> PredictParams:
    """Load (and validate) the params file ``path`` the way the stages do."""
    from pipeline.params import load_file, load_params

    path = Path(path)
    whole = load_file(path)
    return PredictParams(
        path=path,
        detect_faces=load_params("detect_faces", path),
        extract_audio=load_params("extract_audio", path),
        separate_vocals=load_params("separate_vocals", path),
        embed_faces=load_params("embed_faces", path),
        embed_audio=load_params("embed_audio", path),
        window_stats=load_params("window_stats", path),
        features=dict(whole.window_stats.features),
        fit={m: load_params(f"fit.{m}", path) for m in ("svm", "kelm", "lstm")},
        fit_raw_audio=load_params("fit_raw_audio", path),
        fit_fusion_net=load_params("fit_fusion_net", path),
        fit_feature_fusion=load_params("fit_feature_fusion", path),
        fuse=load_params("fuse", path),
    )


# ------------------------------------------------------------------------------ model set


def is_fusion_net(prm: PredictParams, name: str) -> bool:
    """Whether ``name`` is a model-level fusion network (``fit_fusion_net.nets``)."""
    return name in prm.fit_fusion_net.nets


def split_model(name: str) -> tuple[str, str | None]:
    """``(classifier, feature)`` of a fit-matrix model's name; ``(name, None)`` for the
    raw-audio model and the feature-level fusion network, which read no embedding (fusion
    networks: :func:`model_inputs`)."""
    if name in RAW_AUDIO or name == FEATURE_FUSION:
        return name, None
    classifier, _, feature = name.partition("_")
    return classifier, feature


def feature_source(prm: PredictParams, feature: str) -> tuple[str, str]:
    """``(faces | audio, backbone)`` of a window feature (``window_stats.features``)."""
    kind, _, backbone = prm.features.get(feature, "").partition("/")
    if kind not in ("faces", "audio") or not backbone:
        raise PipelineError(
            f"{prm.path}: window_stats.features.{feature}: {prm.features.get(feature)!r} is "
            "not faces/<backbone> or audio/<backbone>; predict cannot compute it"
        )
    return kind, backbone


def model_inputs(prm: PredictParams, name: str) -> list[tuple[str, str]]:
    """``(faces | audio, backbone)`` of each embedding a fitted model reads: one for a
    fit-matrix model, face and audio for a fusion network, none for the raw-audio model."""
    if is_fusion_net(prm, name):
        cfg = prm.fit_fusion_net
        return [tuple(cfg.faces.split("/")), tuple(cfg.audio.split("/"))]
    feature = split_model(name)[1]
    return [] if feature is None else [feature_source(prm, feature)]


def modalities_of(prm: PredictParams, name: str) -> list[str]:
    """``face`` and/or ``audio``: what a fitted model reads (a fusion network reads both and
    works with either one)."""
    if name == FEATURE_FUSION:  # face crops and the raw audio
        return ["face", "audio"]
    if split_model(name)[1] is None and not is_fusion_net(prm, name):
        return ["audio"]
    return ["face" if kind == "faces" else "audio" for kind, _ in model_inputs(prm, name)]


def uses_vocals(prm: PredictParams, names: list[str]) -> bool:
    """Whether a model in ``names`` reads the separated vocals (``embed_audio.source`` or
    ``fit_raw_audio.source`` is ``vocals``)."""
    for name in names:
        if name in RAW_AUDIO or name == FEATURE_FUSION:
            cfg = prm.fit_raw_audio if name in RAW_AUDIO else prm.fit_feature_fusion
            if cfg.source == "vocals":
                return True
        elif "audio" in modalities_of(prm, name) and prm.embed_audio.source == "vocals":
            return True
    return False


def check_model_set(root: Path, prm: PredictParams) -> dict[str, Any]:
    """Check that ``root`` holds a complete model set made with the params of ``prm``.

    Missing: no ``fuse/choice.json``, or a file a fused model needs (its ``model.joblib``,
    ``report.json``, ``scores.h5``, the fine-tuned network, a pretrained checkpoint).

    Stale (made with other params than ``prm.path``), judged by what the pipeline stores:

    - the ``params_digest`` attribute of ``fuse/chosen/scores.h5`` and of every fused model's
      ``fit/<model>/scores.h5`` against the digest of the same stage params read from
      ``prm.path`` (covers ``fuse``, ``fit.<model>``, ``fit_raw_audio`` and the ``base`` keys
      they read);
    - where ``root`` sits in a DVC project (``dvc.lock`` beside it), every param value that
      ``dvc.lock`` records for the stages that made the models (those ``dvc.yaml`` defines,
      all but ``evaluate``; :func:`lock_mismatch`) against ``prm.path``: this covers the
      upstream stages (faces, audio, embeddings, windows) too.

    Without a ``dvc.lock`` (a model folder copied elsewhere) only the digests are checked.

    Returns
    -------
    The fusion choice (``fuse/choice.json``).

    Raises
    ------
    PipelineError
        One line naming the missing file or the differing params, and what to run.
    """
    from pipeline.io.h5 import params_digest, read_attrs
    from pipeline.pretrained import verify_checkpoint

    choice_file = root / "fuse" / "choice.json"
    if not choice_file.is_file():
        raise PipelineError(f"{root}: no trained model set ({choice_file} not found); {RUN_HINT}")
    choice = json.loads(choice_file.read_text())
    digests = {root / "fuse" / "chosen" / "scores.h5": ("fuse", prm.fuse)}
    needed: list[Path] = [root / "fuse" / "chosen" / "scores.h5"]
    for name in choice["models"]:
        classifier, feature = split_model(name)
        folder = root / "fit" / name
        torch_file = (
            (name in RAW_AUDIO and prm.task == "va")
            or is_fusion_net(prm, name)
            or name == FEATURE_FUSION
        )
        needed += [folder / ("model.pt" if torch_file else "model.joblib"), folder / "report.json"]
        needed.append(folder / "scores.h5")
        if is_fusion_net(prm, name):
            digests[folder / "scores.h5"] = ("fit_fusion_net", prm.fit_fusion_net)
            if ("faces", "finetuned") in model_inputs(prm, name):
                needed.append(root / "finetune_faces" / "model.pt")
        elif name == FEATURE_FUSION:
            digests[folder / "scores.h5"] = ("fit_feature_fusion", prm.fit_feature_fusion)
        elif feature is None:
            digests[folder / "scores.h5"] = ("fit_raw_audio", prm.fit_raw_audio)
        elif classifier in prm.fit:
            digests[folder / "scores.h5"] = (f"fit.{classifier}", prm.fit[classifier])
            if feature_source(prm, feature) == ("faces", "finetuned"):
                needed.append(root / "finetune_faces" / "model.pt")
        else:
            raise PipelineError(f"{choice_file}: unknown model {name!r}; {RUN_HINT}")
    for name in choice["models"]:
        for _, backbone in model_inputs(prm, name):
            if backbone in STAGE_CHECKPOINTS:
                needed.append(root / STAGE_CHECKPOINTS[backbone] / "model.pt")
    missing = [p for p in dict.fromkeys(needed) if not p.is_file()]
    if missing:
        raise PipelineError(f"{root}: incomplete model set ({missing[0]} not found); {RUN_HINT}")
    for file, (section, cfg) in digests.items():
        stored, now = read_attrs(file).get("params_digest"), params_digest(vars(cfg))
        if stored != now:
            raise PipelineError(
                f"{root}: stale model set: {file.relative_to(root)} was made with other "
                f"`{section}` params than {prm.path} (params digest {stored} vs {now}); "
                + STALE_HINT
            )
    lock = root.resolve().parent / "dvc.lock"
    if lock.is_file():
        problem = lock_mismatch(lock, prm.path)
        if problem:
            raise PipelineError(f"{root}: stale model set: {problem}; " + STALE_HINT)
    checkpoints = set()
    for name in choice["models"]:
        if {("faces", "fer_xception"), ("faces", "finetuned")} & set(model_inputs(prm, name)):
            checkpoints.add("fer_xception")
    if prm.separate_vocals.method == "spleeter" and uses_vocals(prm, choice["models"]):
        checkpoints.add("spleeter_2stems")
    folders = {"fer_xception": "fer", "spleeter_2stems": "spleeter/2stems"}
    for name in sorted(checkpoints):
        try:
            verify_checkpoint(name, root / "pretrained" / folders[name])
        except PipelineError as err:
            raise PipelineError(f"{err}; {RUN_HINT}") from None
    return choice


def lock_mismatch(lock: Path, params: Path) -> str:
    """The first param whose value in ``params`` differs from what ``lock`` (a ``dvc.lock``)
    records for the stages that made the models, or ``""``.

    Those stages are the ones the ``dvc.yaml`` beside ``lock`` defines with the values of
    ``params`` (``foreach`` and ``matrix`` items expanded, :func:`dvc_stage_names`), all but
    ``evaluate``; a lock entry of a stage no longer defined (DVC keeps them) is ignored, and a
    defined stage without an entry is a mismatch (its models were never made).
    """
    import yaml

    from pipeline.params import read_yaml

    current = read_yaml(params)
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages") or {}
    dvc_yaml = lock.with_name("dvc.yaml")
    wanted = dvc_stage_names(dvc_yaml, current) if dvc_yaml.is_file() else sorted(stages)
    for stage in wanted:
        if stage.split("@")[0] == "evaluate":
            continue
        if stage not in stages:
            return f"{lock} has no entry for stage {stage} (never run with these params)"
        for file, values in sorted((stages[stage].get("params") or {}).items()):
            if Path(file).name != "params.yaml":
                continue
            for key, recorded in sorted(values.items()):
                node: Any = current
                for part in key.split("."):
                    node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
                if not _same(node, recorded):
                    now = "no such key" if node is _ABSENT else f"{node!r}"
                    return (
                        f"{lock} records {key} = {recorded!r} (stage {stage}), {params} has {now}"
                    )
    return ""


def _same(a: Any, b: Any) -> bool:
    """Equal params values, read from YAML files by different writers: DVC writes ``1e-05``,
    which PyYAML (YAML 1.1) reads as a string, where params.yaml's ``1.0e-5`` is a float."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers_or_text = [
        isinstance(x, int | float | str) and not isinstance(x, bool) for x in (a, b)
    ]
    if isinstance(a, str) != isinstance(b, str) and all(numbers_or_text):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def dvc_stage_names(dvc_yaml: Path, params: dict[str, Any]) -> list[str]:
    """Names of the stages ``dvc_yaml`` defines with these params values, as ``dvc.lock`` names
    them: ``name``, ``name@key`` for each item of a ``foreach: ${section.key}`` (mapping keys
    or list items) and ``name@a-b`` for each combination of a ``matrix`` of such lists."""
    import itertools

    import yaml

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            node: Any = params
            for part in value[2:-1].split("."):
                node = node[part]
            return node
        return value

    names = []
    for name, body in (yaml.safe_load(dvc_yaml.read_text()).get("stages") or {}).items():
        if "foreach" in body:
            items = resolve(body["foreach"])
            names += [f"{name}@{key}" for key in items]  # mapping keys or list items
        elif "matrix" in body:
            axes = [resolve(values) for values in body["matrix"].values()]
            names += [f"{name}@{'-'.join(map(str, c))}" for c in itertools.product(*axes)]
        else:
            names.append(name)
    return sorted(names)


_ABSENT = object()


class ModelSet:
    """A checked model set (``models/``), its fusion choice, and every model and backbone it
    needs, each loaded once on first use."""

    def __init__(self, root: str | Path, prm: PredictParams):
        from pipeline.embed.device import resolve_device

        self.root = Path(root)
        self.prm = prm
        self.choice = check_model_set(self.root, prm)
        self.names: list[str] = list(self.choice["models"])
        self.device = resolve_device(prm.embed_faces.device)
        self._loaded: dict[tuple[str, str], Any] = {}

    def _once(self, key: tuple[str, str], load) -> Any:
        if key not in self._loaded:
            start = time.perf_counter()
            self._loaded[key] = load()
            log.info("loaded %s %s in %.1f s", *key, time.perf_counter() - start)
        return self._loaded[key]

    def face_backbone(self, name: str):
        """The ``embed_faces`` backbone ``name`` (``face_backbones.FaceBackbone``), with the
        feature enhancement of its ``embed_faces`` entry."""
        from pipeline.embed.enhance import enhance_backbone
        from pipeline.embed.face_backbones import load_face_backbone

        cfg = self.prm.embed_faces
        entry = cfg.backbones.get(name)
        return self._once(
            ("face backbone", name),
            lambda: enhance_backbone(
                load_face_backbone(
                    name,
                    pretrained_dir=self.root / "pretrained",
                    weights=self._weights(name, entry),
                    device=self.device,
                    batch_size=cfg.batch_size,
                ),
                entry.enhance if entry else "none",
            ),
        )

    def _weights(self, name: str, entry) -> str | None:
        """A backbone's ``weights`` param, else its pretrain stage's checkpoint (as the embed
        stages default to), else None."""
        if entry is not None and entry.weights is not None:
            return entry.weights
        stage = STAGE_CHECKPOINTS.get(name)
        return None if stage is None else str(self.root / stage / "model.pt")

    def finetuned(self):
        """The ``finetune_faces`` network (``models/finetune_faces/model.pt``)."""
        from pipeline.embed.finetune import load_finetuned

        path = self.root / "finetune_faces" / "model.pt"
        return self._once(("network", "finetuned"), lambda: load_finetuned(path, self.device))

    def audio_backbone(self, name: str):
        """The ``embed_audio`` backbone ``name`` (``audio_features.AudioBackbone``)."""
        from pipeline.embed.audio_features import load_audio_backbone

        cfg = self.prm.embed_audio
        entry = cfg.backbones.get(name)
        return self._once(
            ("audio backbone", name),
            lambda: load_audio_backbone(
                name,
                pretrained_dir=self.root / "pretrained",
                weights=self._weights(name, entry),
                device=self.device,
                rate_hz=cfg.label_rate_hz,
                batch_size=cfg.batch_size,
            ),
        )

    def estimator(self, name: str):
        """The fitted model ``name`` (``model.joblib``; the raw-audio va network and the fusion
        networks: ``model.pt``)."""
        folder = self.root / "fit" / name

        def load():
            if is_fusion_net(self.prm, name):
                from pipeline.models.fusion_net import TrainedFusionNet

                return TrainedFusionNet.load(folder / "model.pt")
            if name == FEATURE_FUSION:
                from pipeline.models.feature_fusion import load_feature_fusion

                return load_feature_fusion(folder / "model.pt")
            if name in RAW_AUDIO and self.prm.task == "va":
                import torch

                return torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
            import joblib

            return joblib.load(folder / "model.joblib")

        return self._once(("model", name), load)

    def fallback(self, name: str) -> np.ndarray:
        """What model ``name`` gives a bin no window covers: the training class prior (expr)
        or the training mean valence/arousal (va), from its ``report.json``."""
        from pipeline.models.fitting import training_prior
        from pipeline.models.raw_audio import raw_audio_prior

        report_file = self.root / "fit" / name / "report.json"
        report = json.loads(report_file.read_text())
        if self.prm.task == "va":
            if "train_mean" not in report:
                raise PipelineError(
                    f"{report_file}: no train_mean (made by an older pipeline); {STALE_HINT}"
                )
            return np.asarray(report["train_mean"], np.float32)
        prior = raw_audio_prior if name in RAW_AUDIO else training_prior
        return prior(report["class_counts"])


# ------------------------------------------------------------------------------ one video


@dataclass
class VideoPrediction:
    """Everything predict computed for one video (see the module docstring for the files)."""

    path: Path
    stem: str
    info: Any  # pipeline.data.media.MediaInfo
    grid_t: np.ndarray  # [n] 5 Hz bin centres (s)
    frame_t: np.ndarray  # [F] frame times (s)
    face_frames: np.ndarray  # [F] bool
    face_grid: np.ndarray  # [n] bool
    values: np.ndarray  # [n, K] fused probabilities (or [n, 2] valence/arousal)
    modalities: dict[str, dict[str, Any]]
    models_used: list[str]
    models_left_out: dict[str, str]
    weights: np.ndarray  # the fusion weights applied, over ModelSet.names
    scores: dict[str, dict[str, np.ndarray]]  # every model's 5 Hz scores and ``covered``
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(seconds: dict[str, float], step: str, stem: str) -> Iterator[None]:
    """Time a step into ``seconds`` and log its start and end (progress on long videos; the
    face track also logs every 30 s)."""
    log.info("%s: %s ...", stem, step)
    start = time.perf_counter()
    yield
    seconds[step] = round(seconds.get(step, 0.0) + time.perf_counter() - start, 3)
    log.info("%s: %s done in %.1f s", stem, step, time.perf_counter() - start)


def predict_video(path: Path, ms: ModelSet, work: Path) -> VideoPrediction:
    """Predict the emotions of one video with the model set ``ms``; ``work`` holds the
    intermediate files (face track, audio, vocals).

    Raises
    ------
    DataError
        The file is missing or cannot be decoded: the message ``build_manifest`` gives for it.
    """
    from pipeline.audio.extract import extract_audio_job
    from pipeline.audio.separate import separate_vocals_job
    from pipeline.data.manifest import ManifestRow, id_problem
    from pipeline.data.media import probe
    from pipeline.io.h5 import read_attrs, read_group
    from pipeline.io.per_video import VideoJob
    from pipeline.labels.resample import grid_times, media_duration_s, n_bins
    from pipeline.video.faces import detect_faces_job

    prm, seconds = ms.prm, {}
    stem = path.stem
    vid = stem if not id_problem(stem) else "video"  # the HDF5 group name of the work files
    with _timed(seconds, "probe", stem):
        info = probe(path)
    if info.partly_decodable:
        log.warning("%s: %s (the decoded part is used)", path, info.partly_decodable)
    media = {k: v for k, v in asdict(info).items() if k != "partly_decodable"}
    row = ManifestRow(vid, str(path), "predict", vid, "", "", label_frames=0, **media)
    n = n_bins(media_duration_s(row), prm.rate_hz)
    grid_t = grid_times(n, prm.rate_hz)
    log.info(
        "%s: %s, %.1f s, %s frames at %.3f fps, %d bins at %g Hz",
        stem,
        info.modality,
        info.duration_s,
        info.n_frames,
        info.fps,
        n,
        prm.rate_hz,
    )
    modalities: dict[str, dict[str, Any]] = {}

    # faces: the streamed track of detect_faces, written to the work folder
    faces_dir = work / "faces"
    track = None
    if not row.has_video:
        modalities["face"] = {"usable": False, "why": f"no video stream (modality {row.modality})"}
    else:
        with _timed(seconds, "faces", stem):
            job_info = {"fps": row.fps, "duration_s": row.duration_s}
            job = VideoJob(vid, (path,), faces_dir / f"{vid}.h5", job_info)
            try:
                detect_faces_job(job, "predict", cfg=prm.detect_faces.face_config())
                track = read_group(job.out, vid, ["t", "frame_index", "valid"])
            except DataError as err:
                modalities["face"] = {"usable": False, "why": f"face track failed: {err}"}
        if track is not None:
            found, sampled = int(track["valid"].sum()), len(track["valid"])
            modalities["face"] = {
                "usable": found > 0,
                "frames_sampled": sampled,
                "frames_with_face": found,
            }
            if not found:
                modalities["face"]["why"] = f"no face found in any of {sampled} sampled frames"

    # audio: extract_audio and separate_vocals, written to the work folder
    sources: dict[str, Path] = {}
    if not row.has_audio:
        modalities["audio"] = {"usable": False, "why": f"no audio track (modality {row.modality})"}
    else:
        try:
            with _timed(seconds, "audio", stem):
                job = VideoJob(vid, (path,), work / "audio" / f"{vid}.h5")
                extract_audio_job(job, "predict", rate_hz=prm.extract_audio.rate_hz)
                sources["audio"] = job.out
            if uses_vocals(prm, ms.names):
                sv = prm.separate_vocals
                with _timed(seconds, "vocals", stem):
                    job = VideoJob(vid, (sources["audio"],), work / "vocals" / f"{vid}.h5")
                    separate_vocals_job(
                        job,
                        "predict",
                        method=sv.method,
                        model_dir=str(ms.root / "pretrained" / "spleeter" / "2stems"),
                        chunk_s=sv.chunk_s,
                        overlap_s=sv.overlap_s,
                    )
                    sources["vocals"] = job.out
            audio_s = read_attrs(sources["audio"])["report"]["seconds"]
            modalities["audio"] = {"usable": audio_s > 0, "seconds": audio_s}
            if not audio_s:
                modalities["audio"]["why"] = "the audio track holds no samples"
        except DataError as err:
            modalities["audio"] = {"usable": False, "why": f"audio failed: {err}"}
    for kind in ("face", "audio"):
        if not modalities[kind]["usable"]:
            log.warning("%s: no usable %s (%s)", stem, kind, modalities[kind]["why"])

    # per-model 5 Hz scores
    scores = _model_scores(ms, row, n, grid_t, faces_dir, sources, modalities, seconds)

    # fusion
    values, weights, used, left_out = _fuse(ms, scores, modalities, n)
    if left_out:
        log.warning(
            "%s: fused %d of %d models; left out: %s",
            stem,
            len(used),
            len(ms.names),
            "; ".join(f"{m} ({why})" for m, why in left_out.items()),
        )

    # frames at the video's own rate (as the evaluation protocol counts them)
    if row.has_video:
        frame_t = np.arange(row.n_frames) / row.fps
    else:  # audio-only media: the 5 Hz bins' starts
        frame_t = np.arange(n) / prm.rate_hz
    face_frames = _hold_flags(track, frame_t, row.fps)
    face_grid = _hold_flags(track, grid_t, row.fps)
    return VideoPrediction(
        path=path,
        stem=stem,
        info=info,
        grid_t=grid_t,
        frame_t=frame_t,
        face_frames=face_frames,
        face_grid=face_grid,
        values=values,
        modalities=modalities,
        models_used=used,
        models_left_out=left_out,
        weights=weights,
        scores=scores,
        seconds=seconds,
    )


def _hold_flags(track: dict | None, times: np.ndarray, fps: float) -> np.ndarray:
    """``valid`` of the last sampled frame at or before each time (the first sampled frame for
    times before it); all False without a face track."""
    if track is None or not len(track["t"]):
        return np.zeros(len(times), bool)
    # sampled frames by their frame index: frame i lies at i / fps, as ``times`` do
    sampled_t = track["frame_index"] / fps if fps else track["t"]
    idx = np.searchsorted(sampled_t, times + 1e-9, side="right") - 1
    return track["valid"][np.clip(idx, 0, len(sampled_t) - 1)]


def _model_scores(
    ms: ModelSet,
    row,
    n: int,
    grid_t: np.ndarray,
    faces_dir: Path,
    sources: dict[str, Path],
    modalities: dict[str, dict],
    seconds: dict[str, float],
) -> dict[str, dict[str, np.ndarray]]:
    """``{model: {"p" [n, K] or "va" [n, 2], "covered" [n]}}`` of every fused model.

    Embeddings (one per backbone a usable model reads), then window features, then models;
    each step is timed in ``seconds``.
    """
    from pipeline.embed.audio_features import embed_audio_file
    from pipeline.embed.face_backbones import embed_faces_file
    from pipeline.embed.finetune import embed_video
    from pipeline.features.summarise import window_features
    from pipeline.io.h5 import read_attrs, read_group
    from pipeline.labels.resample import media_duration_s
    from pipeline.models import fitting, raw_audio
    from pipeline.scores import grid_scores

    prm, vid, K = ms.prm, row.video_id, len(ms.prm.classes)
    key = "va" if prm.task == "va" else "p"

    def usable_inputs(m: str) -> list[tuple[str, str]]:
        return [
            src
            for src, mod in zip(model_inputs(prm, m), modalities_of(prm, m))
            if modalities[mod]["usable"]
        ]

    usable = [m for m in ms.names if any(modalities[k]["usable"] for k in modalities_of(prm, m))]
    features = sorted(
        {f for m in usable if not is_fusion_net(prm, m) and (f := split_model(m)[1]) is not None}
    )

    embeddings: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for kind, backbone in sorted({src for m in usable for src in usable_inputs(m)}):
        with _timed(seconds, f"embed {kind}/{backbone}", vid):
            if kind == "faces" and backbone == "finetuned":
                arrays, _ = embed_video(ms.finetuned(), row, faces_dir, K, ms.device)
            elif kind == "faces":
                arrays = embed_faces_file(
                    ms.face_backbone(backbone),
                    faces_dir / f"{vid}.h5",
                    vid,
                    prm.embed_faces.batch_size,
                )
            else:
                arrays = embed_audio_file(
                    ms.audio_backbone(backbone),
                    sources[prm.embed_audio.source],
                    vid,
                    media_duration_s(row),
                    prm.embed_audio.label_rate_hz,
                )
        embeddings[(kind, backbone)] = arrays

    windows: dict[str, dict[str, Any]] = {}
    with _timed(seconds, "windows", vid):
        ws = prm.window_stats
        for feature in features:
            g = window_features(
                embeddings[feature_source(prm, feature)],
                grid_t,
                ws.label_rate_hz,
                window_s=ws.window_s,
                overlap=ws.overlap,
                min_valid_frac=ws.min_valid_frac,
            )
            g["y"] = np.full(len(g["t"]), -1, np.int8)  # unlabelled (LSTM sequences carry y)
            g["attrs"] = {"split": "predict", "n_grid": n}
            windows[feature] = g

    out = {}
    with _timed(seconds, "models", vid):
        for name in ms.names:
            classifier, feature = split_model(name)
            fallback = ms.fallback(name)
            if name not in usable:
                out[name] = {key: np.tile(fallback, (n, 1)), "covered": np.zeros(n, bool)}
                continue
            est = ms.estimator(name)
            if is_fusion_net(prm, name):  # both embeddings on the grid, a missing one invalid
                face_src, audio_src = model_inputs(prm, name)
                have = usable_inputs(name)
                values, covered = est.video_scores(
                    embeddings[face_src] if face_src in have else None,
                    embeddings[audio_src] if audio_src in have else None,
                    n,
                    fallback,
                )
            elif name == FEATURE_FUSION:  # face crops + raw audio in segments
                values, covered = _feature_fusion_scores(
                    est, prm, row, n, faces_dir, sources, modalities, fallback
                )
            elif feature is None:  # a raw-audio network on its own windows of the waveform
                cfg = prm.fit_raw_audio
                src = sources[cfg.source]
                wave = read_group(src, vid, ["wave"])["wave"]
                rate = int(read_attrs(src)["rate_hz"])
                w = raw_audio.video_windows(wave, rate, n, cfg.window_s, cfg.overlap, prm.rate_hz)
                if prm.task == "va":
                    pred = raw_audio.predict_va(est, w["x"])
                    values, covered = grid_scores(pred, w["start"], w["end"], n, fallback)
                else:
                    values, covered = raw_audio.raw_audio_grid(
                        est, w["x"], w["start"], w["end"], n, fallback
                    )
            elif prm.task == "va":
                g = windows[feature]
                values, covered = fitting.video_grid(fitting.window_va_pred(est, g), g, fallback)
            else:
                g = windows[feature]
                seq_len = prm.fit["lstm"].seq_len if classifier == "lstm" else 0
                per_window = fitting.window_proba(classifier, est, {vid: g}, "predict", K, seq_len)
                values, covered = fitting.video_grid(per_window[vid], g, fallback)
            out[name] = {key: values, "covered": covered}
    return out


def _feature_fusion_scores(
    net,
    prm: PredictParams,
    row,
    n: int,
    faces_dir: Path,
    sources: dict[str, Path],
    modalities: dict[str, dict],
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Seed 003's feature-level fusion network on one video's segments (the face crops of its
    track and its audio; a modality that is not usable is left empty, as in training)."""
    from pipeline.io.h5 import read_group
    from pipeline.models.feature_fusion import segment_outputs, video_faces, video_inputs
    from pipeline.models.vgg_faces import FACE_SIDE_PX
    from pipeline.scores import grid_scores

    cfg, vid = prm.fit_feature_fusion, row.video_id
    face_t, faces = np.zeros(0), np.zeros((0, FACE_SIDE_PX, FACE_SIDE_PX), np.uint8)
    if modalities["face"]["usable"]:
        face_t, faces = video_faces(faces_dir / f"{vid}.h5", vid)
    wave = None
    if modalities["audio"]["usable"]:
        wave = read_group(sources[cfg.source], vid, ["wave"])["wave"]
    g = {"wave": wave, "face_t": face_t, "faces": faces, "y": np.full(n, -1)}
    w = video_inputs(g, cfg, net.audio.init_kwargs["rate_hz"], prm.rate_hz, 1, "expr")
    return grid_scores(segment_outputs(net, w["x"], prm.task), w["start"], w["end"], n, fallback)


def _fuse(
    ms: ModelSet, scores: dict[str, dict], modalities: dict[str, dict], n: int
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, str]]:
    """The chosen fusion of one video's model scores, over the models that have something to
    say: ``(values [n, D], weights applied, models used, {model left out: why})``."""
    from pipeline.fusion import apply_mcwf, apply_swf, apply_va, opinion_mask, restrict_weights
    from pipeline.scores import smooth_stacked

    prm, choice = ms.prm, ms.choice
    key = "va" if prm.task == "va" else "p"
    names = ms.names
    P = np.stack([scores[m][key] for m in names]).astype(np.float32)
    P = smooth_stacked(P, [("video", n)], int(choice["smooth_bins"]))
    left_out = {}
    for m in names:
        lacking = [k for k in modalities_of(prm, m) if not modalities[k]["usable"]]
        if len(lacking) == len(modalities_of(prm, m)):
            left_out[m] = "; ".join(f"no usable {k}: {modalities[k]['why']}" for k in lacking)
        elif not scores[m]["covered"].any():
            left_out[m] = "no window with enough valid frames"
    use = np.array([m not in left_out for m in names])
    weights = np.asarray(choice["weights"], np.float64)
    if use.any():
        weights = restrict_weights(weights, use)
    else:  # nothing usable: every model gives its prior, fused as fuse fused them
        log.warning("no usable modality: the scores are the models' training priors")
    if prm.task == "va":
        values = apply_va(P, weights).astype(np.float32)
    else:
        opinion = opinion_mask(P, choice["entropy_gate"])
        values = (apply_swf if weights.ndim == 1 else apply_mcwf)(P, weights, opinion)
    weight_of = weights if weights.ndim == 1 else weights.max(axis=1)
    used = [m for m, w in zip(names, weight_of) if w > 0 and m not in left_out]
    return values, weights, used, left_out


# ------------------------------------------------------------------------------ outputs


def frame_values(pred: VideoPrediction, ms: ModelSet) -> np.ndarray:
    """Per-frame values: 5 Hz probabilities held over each bin's frames and normalised to sum
    to 1 (expr), or valence/arousal interpolated linearly between bin centres (va)."""
    from pipeline.labels.resample import grid_to_frames

    if ms.prm.task == "va":
        return grid_to_frames(pred.values, ms.prm.rate_hz, pred.frame_t, "linear")
    return normalise(grid_to_frames(pred.values, ms.prm.rate_hz, pred.frame_t, "hold"))


def normalise(p: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1 (an all-zero row becomes uniform)."""
    p = np.asarray(p, np.float64)
    total = p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, p / total, 1.0 / p.shape[1])


def write_outputs(pred: VideoPrediction, ms: ModelSet, out: Path) -> dict[str, Any]:
    """Write the four files of one video (module docstring); returns the JSON summary."""
    from pipeline.io.atomic import atomic_path, write_json

    prm, start = ms.prm, time.perf_counter()
    va = prm.task == "va"
    names = ["valence", "arousal"] if va else list(prm.classes)
    per_frame = frame_values(pred, ms)
    per_bin = pred.values.astype(np.float64) if va else normalise(pred.values)
    files = {
        "frames": out / f"{pred.stem}_frames.csv",
        "5hz": out / f"{pred.stem}_5hz.csv",
        "timeline": out / f"{pred.stem}_timeline.png",
        "summary": out / f"{pred.stem}.json",
    }
    for (index_name, times, faces, values), dst in (
        (("frame", pred.frame_t, pred.face_frames, per_frame), files["frames"]),
        (("bin", pred.grid_t, pred.face_grid, per_bin), files["5hz"]),
    ):
        with atomic_path(dst) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow([index_name, "time_s", "face", *names] + ([] if va else ["label"]))
            for i, (t, face, row) in enumerate(zip(times, faces, values)):
                label = [] if va else [names[int(np.argmax(row))]]
                w.writerow([i, f"{t:.4f}", int(face), *(f"{v:.6f}" for v in row), *label])
    with atomic_path(files["timeline"]) as tmp:
        plot_timeline(tmp, pred, names, per_bin, prm.rate_hz, va)
    means = per_frame.mean(axis=0) if len(per_frame) else np.zeros(len(names))
    summary: dict[str, Any] = {
        "video": str(pred.path),
        "modality": pred.info.modality,
        "duration_s": pred.info.duration_s,
        "fps": pred.info.fps,
        "n_frames": int(len(pred.frame_t)),
        "task": prm.task,
        "classes": list(prm.classes),
        "modalities": pred.modalities,
        "models_used": pred.models_used,
        "models_left_out": pred.models_left_out,
        "fusion": {
            "method": ms.choice["method"],
            "model": ms.choice.get("model"),
            "models": ms.names,
            "weights_applied": np.round(pred.weights, 6).tolist(),
            "renormalised": bool(pred.models_left_out),
            "smooth_bins": ms.choice["smooth_bins"],
            "entropy_gate": ms.choice["entropy_gate"],
            "choice": str(ms.root / "fuse" / "choice.json"),
        },
        "model_means": {
            m: dict(zip(names, _rounded(sc["va" if va else "p"].mean(axis=0))))
            for m, sc in pred.scores.items()
        },
        "excluded_by_fuse": ms.choice.get("excluded", {}),
        "params": str(prm.path),
        "models_dir": str(ms.root),
        "outputs": {k: str(v) for k, v in files.items()},
    }
    if va:
        summary["means"] = dict(zip(names, _rounded(means)))
    else:
        labels = per_frame.argmax(axis=1) if len(per_frame) else np.zeros(0, int)
        summary["class_means"] = dict(zip(names, _rounded(means)))
        summary["dominant_emotion"] = names[int(np.argmax(means))]
        share = np.bincount(labels, minlength=len(names)) / max(len(labels), 1)
        summary["label_share"] = dict(zip(names, _rounded(share)))
    pred.seconds["write"] = round(time.perf_counter() - start, 3)
    summary["seconds"] = {**pred.seconds, "total": round(sum(pred.seconds.values()), 3)}
    write_json(files["summary"], summary)
    return summary


def _rounded(x: np.ndarray, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in x]


def no_face_spans(times: np.ndarray, face: np.ndarray, step: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of every run of frames without a face (each frame lasts
    ``step`` seconds)."""
    spans, start = [], None
    for t, f in zip(times, face):
        if not f and start is None:
            start = t
        elif f and start is not None:
            spans.append((float(start), float(t)))
            start = None
    if start is not None:
        spans.append((float(start), float(times[-1] + step)))
    return spans


def plot_timeline(
    dst: Path,
    pred: VideoPrediction,
    names: list[str],
    values: np.ndarray,
    rate_hz: float,
    va: bool,
) -> None:
    """Per-class probabilities (or valence/arousal) on the 5 Hz grid, no-face stretches
    shaded (the whole video when it has no video stream)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = len(pred.grid_t) / rate_hz
    fig, ax = plt.subplots(figsize=(min(20.0, max(7.0, end / 3)), 3.6))
    try:
        spans = (
            no_face_spans(pred.frame_t, pred.face_frames, 1.0 / pred.info.fps)
            if pred.info.has_video
            else [(0.0, end)]
        )
        for i, (s, e) in enumerate(spans):
            ax.axvspan(s, e, color="0.88", lw=0, zorder=0, label="no face" if i == 0 else None)
        for j, name in enumerate(names):
            ax.plot(pred.grid_t, values[:, j], lw=1.3, label=name)
        ax.set_xlim(0, end)
        ax.set_ylim(-1.05, 1.05) if va else ax.set_ylim(0, 1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("value" if va else "probability")
        ax.set_title(f"{pred.path.name}", fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        fig.tight_layout()
        fig.savefig(dst, dpi=100, format="png")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------ entry point


def predict(
    videos: list[Path], out: Path, params: Path, models: Path
) -> dict[str, dict[str, Any]]:
    """Predict every video; returns ``{video: JSON summary}``.

    Raises
    ------
    PipelineError
        Bad params, a missing or stale model set (before any work), duplicate output names,
        or undecodable videos: with one video its own message (the one ``build_manifest``
        gives), with several the count and the first message, after the others are done.
    """
    stems = [Path(v).stem for v in videos]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise PipelineError(f"two videos would write the same outputs: stem {dupes[0]!r}")
    prm = load_predict_params(params)
    ms = ModelSet(models, prm)
    log.info(
        "predict: %d videos, %s fusion of %d models from %s, params %s",
        len(videos),
        ms.choice["method"],
        len(ms.names),
        ms.root,
        prm.path,
    )
    out.mkdir(parents=True, exist_ok=True)
    done, failed = {}, {}
    for i, video in enumerate(videos, 1):
        video = Path(video)
        log.info("video %d of %d: %s", i, len(videos), video)
        try:
            with tempfile.TemporaryDirectory(prefix="avemo-predict-") as work:
                pred = predict_video(video, ms, Path(work))
            summary = write_outputs(pred, ms, out)
        except DataError as err:
            log.error("%s", err)
            failed[str(video)] = str(err)
            continue
        done[str(video)] = summary
        if prm.task == "va":
            what = ", ".join(f"{k} {v:+.2f}" for k, v in summary["means"].items())
        else:
            what = f"dominant {summary['dominant_emotion']}"
        log.info(
            "%s: %s; modalities used: %s; %.1f s -> %s",
            video.name,
            what,
            ", ".join(k for k, m in pred.modalities.items() if m["usable"]) or "none",
            summary["seconds"]["total"],
            summary["outputs"]["summary"],
        )
    if failed:
        first = next(iter(failed.values()))
        if len(videos) == 1:
            raise PipelineError(first)
        raise PipelineError(f"{len(failed)} of {len(videos)} videos failed; first: {first}")
    return done


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m pipeline.predict VIDEO [VIDEO ...] --out DIR``."""
    from pipeline.cli import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Emotions of new videos from the models the pipeline trained.",
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models", type=Path, default=Path("models"), help="trained model set")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        predict(args.videos, args.out, args.params, args.models)
    except PipelineError as err:
        log.error("pipeline.predict failed: %s", err)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
