"""Stage `embed_audio` (foreach backbone): audio embeddings of every video's speech.

Reads  data/interim/manifest.csv, data/interim/<source>/<video_id>.h5 (source = vocals, or
       audio for the ablation without separation), models/pretrained (ge2e_lstm's weights),
       models/pretrain_vggish/model.pt (the vggish_seq backbone);
       params base.device, base.label_rate_hz, base.executor, base.dask_scheduler, embed_audio
Writes features/audio/<backbone>.h5: per video t [T] s, x [T, D] float32, valid [T]
       (videos without an audio track: an empty group with attribute `skipped`)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data.manifest import no_stream, read_manifest
from pipeline.embed import audio_features, cnn14, vggish
from pipeline.embed.device import resolve_device
from pipeline.errors import PipelineError
from pipeline.io.h5 import skipped_group
from pipeline.io.per_video import build_grouped_file, code_digest, runtime
from pipeline.labels.resample import media_duration_s
from pipeline.params import load_params


def _embed(
    vid: str,
    src: Path,
    backbone,
    durations: dict[str, float],
    grid_rate: float,
    skip: dict[str, str],
):
    if skip.get(vid):
        return skipped_group(backbone.dim, skip[vid])
    return audio_features.embed_audio_file(backbone, src, vid, durations[vid], grid_rate), {}


@stage_cli
def main(
    backbone: str,
    manifest: Path,
    audio: Path,
    pretrained: Path,
    dst: Path,
    vggish_seq: Path = Path("models/pretrain_vggish/model.pt"),
    params: Path = Path("params.yaml"),
) -> None:
    """Embed the (separated) audio of every video with one backbone."""
    cfg = load_params("embed_audio", params)
    entry = cfg.backbones.get(backbone)
    device = resolve_device(cfg.device)
    weights = entry.weights if entry else None
    if backbone == "vggish_seq" and weights is None:
        weights = str(vggish_seq)  # the pretrain_vggish checkpoint
    model = audio_features.load_audio_backbone(
        backbone,
        pretrained_dir=pretrained,
        weights=weights,
        device=device,
        rate_hz=cfg.label_rate_hz,
        batch_size=cfg.batch_size,
    )
    rt = runtime(["librosa", "numpy", "torch"], device)
    rows = read_manifest(manifest)
    durations = {r.video_id: media_duration_s(r) for r in rows}
    skip = {r.video_id: no_stream(r, "audio") for r in rows}
    # videos without audio have no file there; their (empty) group is keyed on the manifest
    items = [(v, manifest if skip[v] else audio / f"{v}.h5") for v in sorted(skip)]
    missing = [vid for vid, src in items if not src.is_file()]
    if missing:
        raise PipelineError(
            f"{audio}: no audio file for {len(missing)} videos with an audio "
            f"track, e.g. {missing[0]!r}; re-run the stage that writes {audio}"
        )
    build_grouped_file(
        dst,
        items,
        partial(
            _embed, backbone=model, durations=durations, grid_rate=cfg.label_rate_hz, skip=skip
        ),
        params={
            "backbone": backbone,
            "weights_sha256": model.weights_sha256,
            "source": cfg.source,
            "grid_rate_hz": cfg.label_rate_hz,
            "runtime": rt,
        },
        code=code_digest([audio_features, cnn14, vggish]),
        desc=f"embed_audio[{backbone}]",
        executor=cfg.executor,
        scheduler=cfg.dask_scheduler,
        stage="embed_audio",
        model=backbone,
        weights=model.weights,
        weights_sha256=model.weights_sha256,
        dim=model.dim,
        source=cfg.source,
        runtime=rt,
    )


if __name__ == "__main__":
    main()
