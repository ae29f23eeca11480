"""Seed 002's self-distilled face student: the RKD losses against direct computations, the
teacher targets, and distillation on a FER-2013 table the test makes (stripes tell the
classes apart; the teacher also sees a left-to-right shading, which the labels ignore)."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.embed.face_backbones import FaceBackbone, load_face_backbone
from pipeline.errors import ParamsError, PipelineError
from pipeline.models import checkpoint as ck
from pipeline.models import distil_faces as dist
from pipeline.params import load_params
from tests.pipeline.models.test_pretrain import face_cfg, stripes

ROOT = Path(__file__).resolve().parents[3]


def huber(x: np.ndarray) -> float:
    """torch's smooth L1 (beta 1), averaged."""
    a = np.abs(x)
    return float(np.mean(np.where(a < 1, 0.5 * a**2, a - 0.5)))


def test_rkd_distance_loss_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 4)) * 3
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]

    def psi(e):
        d = np.array([np.linalg.norm(e[i] - e[j]) for i, j in pairs])
        return d / d.mean()

    got = dist.rkd_distance_loss(torch.tensor(s), torch.tensor(t))
    assert float(got) == pytest.approx(huber(psi(s) - psi(t)), rel=1e-9)


def test_rkd_angle_loss_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 6))
    triplets = [p for p in itertools.product(range(5), repeat=3) if len(set(p)) == 3]

    def psi(e):
        out = []
        for i, j, k in triplets:  # the angle at j
            a, b = e[i] - e[j], e[k] - e[j]
            out.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        return np.array(out)

    got = dist.rkd_angle_loss(torch.tensor(s), torch.tensor(t))
    assert float(got) == pytest.approx(huber(psi(s) - psi(t)), rel=1e-9)


def test_rkd_losses_are_zero_for_the_same_structure_and_not_for_another():
    rng = np.random.default_rng(2)
    t = torch.tensor(rng.normal(size=(8, 4)))
    rotation = torch.tensor(np.linalg.qr(rng.normal(size=(4, 4)))[0])
    same = 3.0 * t @ rotation + 1.0  # scaled, rotated, shifted: the same relations
    other = t[torch.tensor([3, 1, 7, 0, 2, 6, 5, 4])]
    for loss in (dist.rkd_distance_loss, dist.rkd_angle_loss):
        assert float(loss(same, t)) < 1e-12
        assert float(loss(other, t)) > 1e-3


def test_distillation_loss_adds_the_weighted_rkd_of_each_chunk_to_the_cross_entropy():
    rng = np.random.default_rng(3)
    logits, emb = torch.tensor(rng.normal(size=(10, 3))), torch.tensor(rng.normal(size=(10, 5)))
    labels, teacher = rng.integers(0, 3, 10), rng.normal(size=(10, 6))
    outputs = torch.cat([logits, emb], dim=1)
    targets = torch.tensor(np.column_stack([labels, teacher]))
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))

    def rkd(a, b):
        t = torch.tensor(teacher[a:b])
        return 2 * dist.rkd_distance_loss(emb[a:b], t) + 5 * dist.rkd_angle_loss(emb[a:b], t)

    whole = dist.DistillationLoss(3, 2.0, 5.0, chunk=64)(outputs, targets)
    assert float(whole) == pytest.approx(float(ce + rkd(0, 10)), rel=1e-9)
    chunked = dist.DistillationLoss(3, 2.0, 5.0, chunk=4)(outputs, targets)
    expected = ce + (4 * rkd(0, 4) + 4 * rkd(4, 8) + 2 * rkd(8, 10)) / 10
    assert float(chunked) == pytest.approx(float(expected), rel=1e-9)


def toy_teacher(name: str, fn) -> FaceBackbone:
    """A teacher whose embedding is ``fn`` of the grey faces (B, 48, 48) float; scores one-hot
    on class 0 for dark faces, class 3 for bright ones (a classifier for the report)."""

    def embed(faces):
        grey = faces[..., 0].astype(np.float64)
        p = np.zeros((len(faces), 7), np.float32)
        p[np.arange(len(faces)), np.where(grey.mean(axis=(1, 2)) > 128, 3, 0)] = 1
        return fn(grey).astype(np.float32), p

    return FaceBackbone(name, 2, "toy", "0" * 64, embed)


def test_teacher_outputs_concatenate_unit_blocks_in_teacher_order():
    faces = np.random.default_rng(4).integers(1, 255, (6, 48, 48), dtype=np.uint8)
    teachers = {
        "b": toy_teacher("b", lambda g: np.stack([g.mean((1, 2)), g.std((1, 2))], 1)),
        "a": toy_teacher("a", lambda g: np.stack([g[:, :24].mean((1, 2)), 3 + 0 * g[:, 0, 0]], 1)),
    }
    targets, scores = dist.teacher_outputs(teachers, faces)
    assert targets.shape == (6, 4) and targets.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(targets[:, :2], axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(targets[:, 2:], axis=1), 1, rtol=1e-6)
    b = np.stack([faces.mean((1, 2)), faces.std((1, 2))], 1)
    np.testing.assert_allclose(targets[:, :2], b / np.linalg.norm(b, axis=1, keepdims=True), 1e-5)
    assert list(scores) == ["b", "a"] and scores["a"].shape == (6, 7)


def shaded_stripes(label: int, level: float, rng) -> np.ndarray:
    """:func:`stripes` shaded from left to right by ``level`` in [0, 1] (a nuisance the
    labels ignore; it survives the student's per-face standardisation, brightness would not)."""
    ramp = np.linspace(-1, 1, 48)[None, :] * 100 * level
    face = stripes(label, rng).astype(np.float64) * 0.5 + 64 + ramp
    return np.clip(face, 0, 255).astype(np.uint8)


def write_table(path: Path, counts: dict[str, int], seed: int = 0) -> None:
    import gzip

    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, n in counts.items():
        for i in range(n):
            label = (0, 3)[i % 2]
            face = shaded_stripes(label, rng.uniform(0, 1), rng)
            lines.append(f"{label},{' '.join(map(str, face.ravel()))},{usage}")
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def cfg(**kw):
    """The student's params: ``pretrain_faces``' test network plus the RKD weights."""
    own = dict(teachers=("shading",), distance=1.0, angle=2.0, epochs=8, patience=8)
    return face_cfg(**(own | kw))


def shading_teacher() -> FaceBackbone:
    """Embeds a face as (cos, sin) of its shading (right half minus left half): relations the
    labels do not have."""

    def fn(g):
        shade = (g[:, :, 24:].mean((1, 2)) - g[:, :, :24].mean((1, 2))) / 100
        return np.stack([np.cos(shade * 2), np.sin(shade * 2)], 1)

    return toy_teacher("shading", fn)


def distance_agreement(net, faces: np.ndarray, teacher: FaceBackbone) -> float:
    """Correlation of the student's pairwise embedding distances with the teacher's."""
    with torch.no_grad():
        s = net.features(torch.from_numpy(faces[:, None].astype(np.float32))).double()
    t = torch.tensor(dist.teacher_outputs({"t": teacher}, faces)[0]).double()
    off = ~torch.eye(len(faces), dtype=torch.bool)
    return float(np.corrcoef(torch.cdist(s, s)[off], torch.cdist(t, t)[off])[0, 1])


def test_distillation_learns_the_task_and_the_teachers_relations(tmp_path):
    """The student classifies the stripes, and RKD makes its embedding follow the teacher's
    shading relations far more closely than the task loss alone does."""
    write_table(tmp_path / "fer2013.csv.gz", {"Training": 160, "PublicTest": 40})
    teacher = shading_teacher()
    student, classes, report = dist.distil_faces(cfg(), tmp_path, {"shading": teacher})
    assert report["splits"]["PublicTest"]["accuracy"] >= 0.95
    assert report["teachers"] == ["shading"] and report["target_dim"] == 2
    assert report["student_dim"] == 8 and 1 <= report["best_epoch"] <= report["epochs_run"]
    assert set(report["teacher_splits"]["PublicTest"]) == {"shading"}
    task_only, _, _ = dist.distil_faces(
        cfg(distance=0.0, angle=0.0), tmp_path, {"shading": teacher}
    )
    rng = np.random.default_rng(9)
    faces = np.stack([shaded_stripes(i % 2 * 3, rng.uniform(0, 1), rng) for i in range(40)])
    distilled = distance_agreement(student, faces, teacher)
    plain = distance_agreement(task_only, faces, teacher)
    assert distilled > 0.6 and distilled > plain + 0.2, (distilled, plain)


def test_stage_writes_a_skipped_student_without_a_table_and_the_backbone_refuses_it(tmp_path):
    from stages.distil_faces import main

    model, report = tmp_path / "model.pt", tmp_path / "report.json"
    args = ["--root", str(tmp_path / "none"), "--pretrained", str(tmp_path), "--vgg-fer"]
    args += [str(tmp_path / "absent.pt"), "--model", str(model), "--report", str(report)]
    args += ["--params", str(ROOT / "params.yaml")]
    main(args)  # no table: no teacher is loaded (absent.pt is never read)
    assert "no fer2013.csv" in ck.checkpoint_skipped(model)
    assert "no fer2013.csv" in json.loads(report.read_text())["skipped"]
    with pytest.raises(PipelineError, match="was skipped"):
        load_face_backbone(
            "distilled_fer",
            pretrained_dir=tmp_path,
            weights=str(model),
            device="cpu",
            batch_size=2,
        )


def test_distilled_fer_backbone_embeds_crops_with_the_student(tmp_path):
    write_table(tmp_path / "fer2013.csv.gz", {"Training": 32, "PublicTest": 8})
    student, classes, report = dist.distil_faces(
        cfg(epochs=1), tmp_path, {"shading": shading_teacher()}
    )
    path = tmp_path / "model.pt"
    ck.save_checkpoint(path, student, classes, "FER-2013")
    backbone = load_face_backbone(
        "distilled_fer", pretrained_dir=tmp_path, weights=str(path), device="cpu", batch_size=3
    )
    crops = np.random.default_rng(5).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    x, p = backbone.embed(crops)
    from pipeline.models.vgg_faces import grey_faces

    with torch.no_grad():
        expected = student.features(torch.from_numpy(grey_faces(crops)))
    assert backbone.dim == 8 and x.shape == (4, 8) and p.shape == (4, 7)
    np.testing.assert_allclose(x, expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("teachers", "message"),
    [
        ("[vgg_fer, vgg_fer]", "distil_faces.teachers"),
        ("[fer_xception, distilled_fer]", "own teacher"),
        ("[]", "distil_faces.teachers"),
    ],
)
def test_teacher_lists_are_checked(tmp_path, teachers, message):
    text = (ROOT / "params.yaml").read_text()
    bad = text.replace("teachers: [fer_xception, vgg_fer]", f"teachers: {teachers}")
    assert bad != text
    path = tmp_path / "params.yaml"
    path.write_text(bad)
    with pytest.raises(ParamsError, match=message):
        load_params("distil_faces", path)
