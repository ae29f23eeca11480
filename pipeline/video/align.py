"""Face alignment: similarity transform to a landmark template, or the papers' enlarged crop."""

from __future__ import annotations

import cv2
import numpy as np

# Five-point template (left eye, right eye, nose tip, mouth left, mouth right) for a
# 112x112 crop, the one used by ArcFace/InsightFace; scaled to the requested size.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def similarity_align(img: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp ``img`` so the landmarks land on the template (rotation, scale, shift only).

    Parameters
    ----------
    img : (H, W, 3) uint8
    landmarks : (5, 2) float
        Five points in image pixels; NaN rows (dlib 5-point has no mouth) are ignored.
    size : int
        Output side in pixels.

    Returns
    -------
    (size, size, 3) uint8
    """
    ok = ~np.isnan(landmarks).any(axis=1)
    src = landmarks[ok].astype(np.float32)
    dst = TEMPLATE_112[ok] * (size / 112.0)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:  # degenerate points: fall back to the eyes-only closed form
        m = cv2.getAffineTransform(
            np.vstack([src[:2], src[:1] + [0, 1]]).astype(np.float32),
            np.vstack([dst[:2], dst[:1] + [0, 1]]).astype(np.float32),
        )
    return cv2.warpAffine(
        img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def enlarged_crop(img: np.ndarray, box: np.ndarray, size: int, margin: float = 0.3) -> np.ndarray:
    """The papers' crop: box enlarged by ``margin`` (0.3 = 30 %), made square, resized.

    Parts outside the frame are filled with black.
    """
    x1, y1, x2, y2 = [float(v) for v in box]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + margin)
    scale = size / side
    m = np.array(
        [[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], np.float32
    )
    return cv2.warpAffine(
        img,
        m,
        (size, size),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
