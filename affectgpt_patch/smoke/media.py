"""A tiny dataset in the layout AffectGPT's ``MERCaptionPlus_Dataset`` reads (under ``{root}/mer2025-dataset``):

    track2_train_mercaptionplus.csv   name, openset (a list string)
    track3_train_mercaptionplus.csv   name, reason
    subtitle_chieng.csv               name, chinese, english
    video/{name}.mp4                  short mp4 (mp4v), decodable by decord
    audio/{name}.wav                  16 kHz mono PCM
    openface_face/{name}/{name}.npy   uint8 [T, H, W, 3] face crops
    openface/{name}.csv               OpenFace FeatureExtraction -aus rows (au_standins.synthetic)

Everything is random but deterministic for a seed, and small enough that AffectGPT's loaders run in
milliseconds.
"""
from __future__ import annotations

import csv
import logging
import shutil
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

log = logging.getLogger(__name__)

DATASET_DIR = "mer2025-dataset"  # MERCaptionPlus' folder under AffectGPT's data root
SAMPLE_RATE = 16000
OPENSETS = (["happy", "relaxed"], ["sad"], ["surprised", "curious"], ["angry"], ["neutral"], ["worried"])


@dataclass(frozen=True)
class MediaSpec:
    samples: int = 4
    frames: int = 20  # video and face frames per sample
    width: int = 64
    height: int = 48
    fps: float = 10.0
    seconds: float = 1.0  # audio length
    face_side: int = 48
    seed: int = 0


@dataclass
class TinyDataset:
    root: Path  # AffectGPT's data root (config.py's data directory)
    names: List[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.root / DATASET_DIR

    @property
    def openface_dir(self) -> Path:
        return self.folder / "openface"

    def video(self, name: str) -> Path:
        return self.folder / "video" / f"{name}.mp4"

    def audio(self, name: str) -> Path:
        return self.folder / "audio" / f"{name}.wav"

    def face(self, name: str) -> Path:
        return self.folder / "openface_face" / name / f"{name}.npy"


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """``frames`` uint8 [T, H, W, 3] (RGB) → an mp4 file; OpenCV when installed, else PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        t, h, w, _ = frames.shape
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4v video to {path}")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        return
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """``samples`` float in [-1, 1] → 16-bit mono PCM (the standard library's ``wave``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def _moving_frames(rng: np.random.Generator, spec: MediaSpec, h: int, w: int) -> np.ndarray:
    """A bright square moving over noise: frames differ, so a decoder that returns one frame T times shows."""
    frames = rng.integers(0, 80, size=(spec.frames, h, w, 3), dtype=np.uint8)
    side = max(4, min(h, w) // 4)
    for t in range(spec.frames):
        x = (t * 3) % max(1, w - side)
        frames[t, h // 3: h // 3 + side, x: x + side] = 230
    return frames


def _write_csv(path: Path, header: List[str], rows: List[List[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_tiny_dataset(root: Path, spec: MediaSpec = MediaSpec()) -> TinyDataset:
    from au_standins.synthetic import write_video as write_openface_csv

    ds = TinyDataset(Path(root), [f"sample_{i:08d}" for i in range(spec.samples)])
    rng = np.random.default_rng(spec.seed)
    openset, reason, subtitle = [], [], []
    for i, name in enumerate(ds.names):
        labels = OPENSETS[i % len(OPENSETS)]
        openset.append([name, str(labels)])
        reason.append([name, f"The person looks {labels[0]}: the voice and the face agree."])
        subtitle.append([name, "", f"This is tiny sample number {i}."])
        write_video(ds.video(name), _moving_frames(rng, spec, spec.height, spec.width), spec.fps)
        t = np.arange(int(spec.seconds * SAMPLE_RATE)) / SAMPLE_RATE
        write_wav(ds.audio(name), 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t)))
        ds.face(name).parent.mkdir(parents=True, exist_ok=True)
        np.save(ds.face(name), _moving_frames(rng, spec, spec.face_side, spec.face_side))
        ds.openface_dir.mkdir(parents=True, exist_ok=True)
        write_openface_csv(ds.openface_dir, name, spec.frames, spec.seed + i)
    _write_annotations(ds, openset, reason, subtitle)
    log.info("tiny dataset (%d samples) written to %s", spec.samples, ds.folder)
    return ds


def _write_annotations(ds: TinyDataset, openset: List[List[str]], reason: List[List[str]],
                       subtitle: List[List[str]]) -> None:
    _write_csv(ds.folder / "track2_train_mercaptionplus.csv", ["name", "openset"], openset)
    _write_csv(ds.folder / "track3_train_mercaptionplus.csv", ["name", "reason"], reason)
    _write_csv(ds.folder / "subtitle_chieng.csv", ["name", "chinese", "english"], subtitle)


@dataclass(frozen=True)
class Clip:
    """One user clip: its media, its subtitle and its OpenFace CSV (``face``: OpenFace's aligned face crops as a
    uint8 [T, H, W, 3] ``.npy``; without it the video's own frames stand in)."""

    video: Path
    audio: Path
    subtitle: str
    openface: Path
    face: Optional[Path] = None

    @property
    def name(self) -> str:
        return self.video.stem


def read_video_frames(path: Path, size: int, limit: Optional[int] = None) -> np.ndarray:
    """The frames of ``path`` (the first ``limit``, else all) as uint8 [T, size, size, 3] RGB (PyAV, else
    OpenCV); :class:`AUAgentError` naming ``--video`` when none decodes."""
    from au_core.errors import AUAgentError

    try:
        import av
    except ImportError:
        av = None
    frames: List[np.ndarray] = []
    if av is not None:
        try:
            with av.open(str(path)) as container:
                for f in container.decode(video=0):
                    frames.append(f.to_ndarray(format="rgb24", width=size, height=size))
                    if limit is not None and len(frames) >= limit:
                        break
        except IndexError:  # PyAV's decode(video=0) of a file without a video stream
            raise AUAgentError("--video: no video stream in this file", path) from None
        except (av.FFmpegError, ValueError) as e:
            raise AUAgentError(f"--video: not a readable video ({e})", path) from None
    else:
        import cv2

        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        while ok and (limit is None or len(frames) < limit):
            frames.append(cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB))
            ok, frame = cap.read()
        cap.release()
    if not frames:
        raise AUAgentError("--video: no video frame could be decoded", path)
    return np.stack(frames)


def write_clip_dataset(root: Path, clip: Clip, face_side: int = MediaSpec.face_side) -> TinyDataset:
    """The user's clip as the only sample of a dataset in the tiny dataset's layout (same names, same files)."""
    ds = TinyDataset(Path(root), [clip.name])
    for src, dst in ((clip.video, ds.video(clip.name)), (clip.audio, ds.audio(clip.name)),
                     (clip.openface, ds.openface_dir / f"{clip.name}.csv")):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    ds.face(clip.name).parent.mkdir(parents=True, exist_ok=True)
    faces = np.load(clip.face) if clip.face else read_video_frames(clip.video, face_side)
    np.save(ds.face(clip.name), faces)
    _write_annotations(ds, [[clip.name, str(["neutral"])]], [[clip.name, "The person looks neutral."]],
                       [[clip.name, "", clip.subtitle]])
    log.info("the clip %s written as a one-sample dataset to %s", clip.name, ds.folder)
    return ds


def write_synthetic_clip(folder: Path, seed: int = 0) -> Clip:
    """A synthetic clip (video, wav, OpenFace CSV) as a user would pass it to ``compare-affectgpt``."""
    ds = write_tiny_dataset(folder, MediaSpec(samples=1, seed=seed))
    name = ds.names[0]
    return Clip(ds.video(name), ds.audio(name), "I did not expect to see you here today.",
                ds.openface_dir / f"{name}.csv")
