"""Synthetic OpenFace CSVs and MER-Factory outputs for the bundled samples, the tests and the benchmarks.

Everything here is invented, deterministic for a given seed, and shaped like the real thing: AU intensities
rise and fall smoothly around expression episodes, blinks spike AU45, neutral stretches stay below the
activity threshold, and some frames lose the face (``success = 0``, zero AUs that OpenFace's smoothing leaks
into) or have low confidence. Teacher descriptions paraphrase the active AUs in varied everyday words and,
like real GPT-4o/Gemini text, now and then mention an AU that is not active or leave one out.

    python -m au_standins.synthetic samples/        # regenerates the bundled samples
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from au_core import contract
from au_core.facs import AU_NAMES, INTENSITY_AUS, PRESENCE_AUS, intensity_word

log = logging.getLogger(__name__)

#: Prototype AU patterns (peak intensities) that episodes are drawn from.
PROTOTYPES: Dict[str, Dict[str, float]] = {
    "happiness": {"AU06": 2.0, "AU12": 2.6, "AU25": 1.3},
    "sadness": {"AU01": 1.8, "AU04": 1.5, "AU15": 1.7, "AU17": 1.1},
    "surprise": {"AU01": 2.3, "AU02": 2.0, "AU05": 1.9, "AU25": 1.6, "AU26": 2.1},
    "fear": {"AU01": 2.0, "AU02": 1.5, "AU04": 1.4, "AU05": 2.1, "AU20": 1.7, "AU25": 1.2},
    "anger": {"AU04": 2.5, "AU07": 2.1, "AU23": 1.9, "AU17": 1.2},
    "disgust": {"AU09": 2.1, "AU10": 1.9, "AU15": 1.1},
    "contempt": {"AU14": 1.9, "AU12": 1.0},
    "speech": {"AU25": 1.3, "AU26": 1.1},
}


def _phrase_table(text: str) -> Dict[str, List[str]]:
    """``AU01  phrase | phrase …`` lines → ``{"AU01": [phrase, …]}`` (a table reads better than nested lists)."""
    table = {}
    for line in text.strip().splitlines():
        code, phrases = line.split(None, 1)
        table[code] = [phrase.strip() for phrase in phrases.split("|")]
    return table


#: Everyday phrasings a teacher LLM uses for each AU.
TEACHER_PHRASES = _phrase_table("""
    AU01  raised inner brows | inner brow raising | lifting of the inner brow corners
    AU02  raised outer brows | outer brow raising | arched outer brows
    AU04  brow lowering | furrowed brows | brows drawn together
    AU05  widened eyes | raised upper lids | eyes opened wide
    AU06  raised cheeks | cheek raising | crow's feet around the eyes
    AU07  tightened lids | narrowed eyes | lid tightening
    AU09  a wrinkled nose | nose wrinkling
    AU10  a raised upper lip | upper lip raising
    AU12  a smile | lip corners pulled up | smiling lips
    AU14  dimpled mouth corners | a dimpler at the mouth corners
    AU15  down-turned lip corners | lip corners pulled down
    AU17  a raised chin | chin raising
    AU20  stretched lips | lips stretched horizontally
    AU23  tightened lips | pressed, tense lips
    AU25  parted lips | lips slightly apart
    AU26  a dropped jaw | an open jaw
    AU45  a blink | closed eyes
""")
#: Freer phrasings, written apart from the evaluation lexicon (``au_core/fidelity.py``) so that the teacher is
#: not scored by its own vocabulary: the lexicon has to earn them, and some it does not read (a miss or a wrong AU
#: that lowers the teacher's measured fidelity, as real LLM text does). ``PARAPHRASE_RATE`` of the AU phrases use
#: them.
TEACHER_PARAPHRASES = _phrase_table("""
    AU01  brows lifted at the middle | a worried upturn of the inner brows | inner eyebrow corners drawn upward
    AU02  outer brows lifted | brow tails pulled up | a raised outer eyebrow line
    AU04  a knitted brow | a frown line between the brows | brows pulled down and together
    AU05  a wide-eyed stare | eyes flared open | upper eyelids lifted high
    AU06  cheeks pushed up | smile lines around the eyes | lifted cheeks
    AU07  eyes narrowed to slits | tensed lower lids | a squint
    AU09  a scrunched nose | nose crinkling | a crinkled nose bridge
    AU10  an upper lip curled up | a lifted upper lip | a sneer
    AU12  a grin | mouth corners drawn upward | an upturned mouth
    AU14  a dimple beside the mouth | mouth corners tucked in | a one-sided dimple
    AU15  a downturned mouth | mouth corners sagging | drooping lip corners
    AU17  a puckered chin | chin pushed up | a wrinkled chin boss
    AU20  lips pulled wide | a horizontal stretch of the mouth | lips drawn sideways
    AU23  lips pressed thin | taut lips | tightly set lips
    AU25  separated lips | a gap between the lips | a slightly open mouth
    AU26  a slack jaw | a jaw hanging open | a lowered jaw
    AU45  eyes shut briefly | eyelids closing | a brief eye closure
""")
#: Share of AU phrases drawn from ``TEACHER_PARAPHRASES`` in new corpora. The bundled samples/ were written
#: before the paraphrases existed: ``python -m au_standins.synthetic samples/ --paraphrase-rate 0`` rewrites them.
PARAPHRASE_RATE = 0.3
_DEGREE = {"slight": ["slight", "subtle", "faint"], "moderate": ["moderate", "noticeable", "clear"],
           "pronounced": ["pronounced", "marked", "distinct"], "strong": ["strong", "intense", "very marked"]}
_OPENINGS = ["The face shows", "The expression features", "We see", "The person displays", "There is"]
_READINGS = ["", "", "", " suggesting mild amusement", " hinting at tension", " consistent with surprise",
             " conveying discomfort", " giving a focused look"]


# ----------------------------------------------------------------------------------------------- OpenFace


def synth_au_track(n_frames: int, rng: np.random.Generator,
                   fail_rate: float = 0.04) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(intensities [N,17], confidence [N], success [N])`` with smooth episodes and failures."""
    t = np.arange(n_frames, dtype=np.float64)
    values = np.abs(rng.normal(0.0, 0.12, size=(n_frames, len(INTENSITY_AUS))))
    col = {code: i for i, code in enumerate(INTENSITY_AUS)}
    n_episodes = int(rng.integers(1, 4)) if n_frames >= 20 else 1
    names = sorted(PROTOTYPES)
    for _ in range(n_episodes):
        proto = PROTOTYPES[names[int(rng.integers(len(names)))]]
        center = rng.uniform(0.1, 0.9) * n_frames
        width = rng.uniform(0.05, 0.18) * max(n_frames, 30)
        scale = rng.uniform(0.6, 1.5)
        envelope = np.exp(-0.5 * ((t - center) / width) ** 2)
        for code, peak in proto.items():
            values[:, col[code]] += envelope * peak * scale * rng.uniform(0.8, 1.2)
    for start in range(int(rng.integers(5, 60)), n_frames, int(rng.integers(60, 120))):
        values[start:start + 3, col["AU45"]] += np.array([1.2, 2.2, 1.0])[: max(0, min(3, n_frames - start))]
    confidence = np.clip(rng.normal(0.95, 0.02, n_frames), 0.85, 0.98)
    success = np.ones(n_frames, dtype=np.int64)
    if n_frames >= 30 and rng.random() < 0.7:
        for _ in range(int(rng.integers(1, 3))):
            start = int(rng.integers(0, n_frames - 10))
            length = int(rng.integers(3, 12))
            success[start:start + length] = 0
            confidence[start:start + length] = rng.uniform(0.0, 0.3, size=len(confidence[start:start + length]))
    low = rng.random(n_frames) < fail_rate
    confidence[low & (success == 1)] = rng.uniform(0.5, 0.79, size=int((low & (success == 1)).sum()))
    values[success == 0] = 0.0
    kernel = np.ones(3) / 3.0  # OpenFace's post-processing: a 3-frame moving average of the _r columns
    values = np.stack([np.convolve(values[:, j], kernel, mode="same") for j in range(values.shape[1])], axis=1)
    return np.clip(values, 0.0, 5.0).round(2), confidence.round(2), success


def openface_csv_text(intensities: np.ndarray, confidence: np.ndarray, success: np.ndarray,
                      fps: float = 25.0, sep: str = ", ") -> str:
    """Render a ``FeatureExtraction -aus`` CSV (40 columns) exactly as OpenFace 2.x formats it."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"{c}_r" for c in INTENSITY_AUS] + [f"{c}_c" for c in PRESENCE_AUS]
    r_index = {c: i for i, c in enumerate(INTENSITY_AUS)}
    lines = [sep.join(header)]
    for i in range(len(intensities)):
        row = [str(i + 1), "0", f"{i / fps:.3f}", f"{confidence[i]:.2f}", str(int(success[i]))]
        row += [f"{v:.2f}" for v in intensities[i]]
        row += [f"{1.0 if c in r_index and intensities[i, r_index[c]] > 1.0 else 0.0:.2f}" for c in PRESENCE_AUS]
        lines.append(sep.join(row))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ descriptions


def _graded(degree: str, phrase: str) -> str:
    """``("faint", "a dropped jaw")`` → ``"a faint dropped jaw"``."""
    for article in ("a ", "an "):
        if phrase.startswith(article):
            return f"{'an' if degree[0] in 'aeiou' else 'a'} {degree} {phrase[len(article):]}"
    return f"{degree} {phrase}"


def _phrase(code: str, rng: random.Random, paraphrase_rate: float) -> str:
    if paraphrase_rate and rng.random() < paraphrase_rate:
        return rng.choice(TEACHER_PARAPHRASES[code])
    return rng.choice(TEACHER_PHRASES[code])


def teacher_description(active: Dict[str, float], rng: random.Random, faithful: bool = False,
                        paraphrase_rate: float = 0.0) -> str:
    """A varied, LLM-like description of the active AUs; unless ``faithful``, sometimes wrong like a teacher.
    ``paraphrase_rate`` of the AU phrases come from ``TEACHER_PARAPHRASES`` (outside the evaluation lexicon)."""
    codes = [c for c in active if c in TEACHER_PHRASES]
    if not faithful and len(codes) > 1 and rng.random() < 0.08:
        codes.remove(rng.choice(codes))  # leaves one out
    parts = []
    for code in codes:
        parts.append(_graded(rng.choice(_DEGREE[intensity_word(active[code])]), _phrase(code, rng, paraphrase_rate)))
    if not faithful and rng.random() < 0.12:
        extra = [c for c in TEACHER_PHRASES if c not in active]
        parts.append(_graded(rng.choice(_DEGREE["slight"]), _phrase(rng.choice(extra), rng, paraphrase_rate)))
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{rng.choice(_OPENINGS)} {body}{rng.choice(_READINGS)}."


def au_template(active: Dict[str, float]) -> str:
    """MER-Factory's template text for a set of AUs."""
    return ", ".join(f"{AU_NAMES[c]} (intensity: {v:.2f})" for c, v in active.items())


# ------------------------------------------------------------------------------------------- the corpus


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _dump(path: Path, obj: object) -> None:
    _write(path, json.dumps(obj, indent=4, ensure_ascii=False) + "\n")


def _active(intensities_row: np.ndarray) -> Dict[str, float]:
    return contract.active_aus(dict(zip(INTENSITY_AUS, intensities_row.tolist())))


def write_video(openface_dir: Path, video: str, n_frames: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Write ``{openface_dir}/{video}.csv``; return its intensities and validity."""
    rng = np.random.default_rng(seed)
    values, confidence, success = synth_au_track(n_frames, rng)
    _write(openface_dir / f"{video}.csv", openface_csv_text(values, confidence, success))
    return values, (success == 1) & (confidence >= 0.8)


def per_frame_json(video: str, values: np.ndarray, valid: np.ndarray, rng: random.Random,
                   n_described: int, paraphrase_rate: float = 0.0) -> Dict[str, object]:
    """The per-frame MER-Factory variant for one video: AUs for every frame, teacher text for a few."""
    n = len(values)
    entries = []
    for i in range(n):
        active = _active(values[i])
        entries.append({"frame": i + 1, "timestamp": round(i / 25.0, 3),
                        "active_aus": {f"{c}_r": v for c, v in active.items()},
                        "au_description": au_template(active), "is_peak_frame": False})
    sums = values.sum(axis=1) * valid
    peak = int(sums.argmax())
    entries[peak]["is_peak_frame"] = True
    candidates = [i for i in range(n) if valid[i] and entries[i]["active_aus"]]
    peaks = [peak] if entries[peak]["active_aus"] else []  # a video may never leave neutral: nothing to describe
    chosen = sorted(set(peaks + rng.sample(candidates, min(n_described, len(candidates))))) if candidates else []
    fine, summary = {}, {}
    for i in chosen:
        active = {k[:-2]: v for k, v in entries[i]["active_aus"].items()}
        fine[str(i + 1)] = teacher_description(active, rng, paraphrase_rate=paraphrase_rate)
        summary[str(i + 1)] = teacher_description(active, rng, faithful=True, paraphrase_rate=paraphrase_rate)
    return {
        "per_frame_au_descriptions": entries,
        "fine_grained_descriptions": fine,
        "summary_description": summary,
        "au_info": {"total_frames": n, "peak_frames": [
            {"peak_index": peak, "frames_before_peak": peak, "frames_after_peak": n - peak - 1}]},
    }


def write_corpus(out: os.PathLike, n_videos: int = 12, frames: Sequence[int] = (90, 160), seed: int = 0,
                 n_described: int = 12, extras: bool = True, paraphrase_rate: float = PARAPHRASE_RATE,
                 first_video: int = 0) -> Dict[str, int]:
    """Write ``openface/``, ``mer_factory/`` (all schemas) and ``legacy_alpaca/`` under ``out``.

    Videos are named ``sample_{first_video:05d}`` onwards. ``paraphrase_rate``: see :data:`PARAPHRASE_RATE`.

    ``extras`` adds the upstream-schema files and the dirty records (teacher errors, leaked chat prefixes,
    temporal text, a gate-agent rejection, a legacy Alpaca file with emotion labels) that cleaning must catch.
    """
    out = Path(out)
    rng = random.Random(seed)
    openface_dir, mer = out / "openface", out / "mer_factory"
    n_records = 0
    for v in range(first_video, first_video + n_videos):
        video = f"sample_{v:05d}"
        n = rng.randint(frames[0], frames[1])
        values, valid = write_video(openface_dir, video, n, seed * 100003 + v)
        data = per_frame_json(video, values, valid, rng, n_described, paraphrase_rate)
        if extras and v == 0:
            _dirty(data, valid, rng)
        n_records += len(data["fine_grained_descriptions"])
        _dump(mer / video / f"{video}_au_analysis.json", data)
    if extras:
        _upstream_files(mer, rng, seed)
        _legacy_alpaca(out / "legacy_alpaca" / "au_instruction_dataset_val.jsonl", rng)
    return {"videos": n_videos, "described_frames": n_records}


def _dirty(data: Dict[str, object], valid: np.ndarray, rng: random.Random) -> None:
    fine: Dict[str, str] = data["fine_grained_descriptions"]
    keys = list(fine)
    entries = data["per_frame_au_descriptions"]
    invalid = next((e for e, ok in zip(entries, valid) if not ok and e["active_aus"]), None)
    if invalid is not None:  # MER-Factory ignores OpenFace's success flag, so failed frames get described too
        fine[str(invalid["frame"])] = teacher_description({k[:-2]: v for k, v in invalid["active_aus"].items()}, rng)
    if len(keys) >= 4:
        fine[keys[0]] = "Error: 503 The model is overloaded. Please try again later."
        fine[keys[1]] = ("system\nYou are a helpful assistant.\nuser\nDescribe the face.\nassistant\n" + fine[keys[1]])
        fine[keys[2]] = "In Frame 8, " + fine[keys[2]][0].lower() + fine[keys[2]][1:]
    neutral = next((e["frame"] for e in entries if not e["active_aus"]), None)
    if neutral is not None:
        fine[str(neutral)] = "A neutral facial expression with no visible muscle movement."
    data["fine_grained_descriptions"] = dict(sorted(fine.items(), key=lambda kv: int(kv[0])))


def _upstream_files(mer: Path, rng: random.Random, seed: int) -> None:
    protos = sorted(PROTOTYPES)
    for k in range(4):
        stem = f"image_{k:03d}"
        if k == 3:
            au_text, llm = "Neutral expression.", "A neutral facial expression was detected."
        else:
            active = contract.active_aus(PROTOTYPES[protos[(k * 3) % len(protos)]])
            au_text, llm = au_template(active), teacher_description(active, rng)
        _dump(mer / stem / f"{stem}_image_analysis.json", {
            "source_path": f"/data/images/{stem}.jpg", "au_text_description": au_text, "llm_au_description": llm,
            "image_visual_description": "A person facing the camera indoors.",
            "final_summary": "In conclusion, the most likely emotional state is uncertain, based on the face."})
    for k in range(2):
        stem = f"clip_{k:03d}"
        values, valid = write_video(mer / stem, stem, 75, seed * 7919 + k)
        sums = values.sum(axis=1) * valid
        peak = int(sums.argmax())
        active = _active(values[peak])
        _dump(mer / stem / f"{stem}_merr_data.json", {
            "source_path": f"/data/videos/{stem}.mp4", "audio_path": f"/data/out/{stem}/{stem}.wav",
            "chronological_emotion_peaks": ["Peak at 1.24s: happy (moderate)"],
            "overall_peak_frame_info": {"frame_number": peak + 1, "timestamp": round(peak / 25, 2),
                                        "top_aus_intensities": {f"{c}_r": v for c, v in active.items()}},
            "coarse_descriptions_at_peak": {"visual_expression": au_template(active),
                                            "visual_objective": "A person speaking in a room.",
                                            "audio_analysis": "", "video_content": ""},
            "final_summary": "In conclusion, the core emotional state is calm, and the most likely cause is talk."})
    _dump(mer / "clip_002" / "clip_002_au_analysis.json", {
        "source_path": "/data/videos/clip_002.mp4",
        "chronological_emotion_peaks": ["neutral (AU rejected)"],
        "overall_peak_au_description": "AU data rejected by Gate Agent due to low quality/inconsistency."})
    _write(mer / "error_logs" / "clip_009_error.log",
           "Error processing video: clip_009\n====================\nAU data file not found\n")


def _legacy_alpaca(path: Path, rng: random.Random) -> None:
    protos = sorted(PROTOTYPES)
    lines = []
    for k in range(16):
        active = contract.active_aus(PROTOTYPES[protos[k % len(protos)]])
        values = ", ".join(f"{c}: {v:.2f}" for c, v in active.items())
        described = au_template(active)
        if k == 5:  # values and their descriptions disagree
            described = au_template({c: v + 0.5 for c, v in active.items()})
        text = (f"Emotion: [{protos[k % len(protos)]}, tense]\nPrompt: Given the emotion label, AU intensity values, "
                f"and their semantic descriptions, provide a detailed and natural facial expression description:\n"
                f"AU values: {values}\nAU descriptions: {described}")
        lines.append(json.dumps({"instruction": "Generate a detailed facial expression description based on the "
                                 "given information.", "input": text, "output": teacher_description(active, rng)},
                                ensure_ascii=False))
    _write(path, "\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paraphrase-rate", type=float, default=PARAPHRASE_RATE,
                        help="share of AU phrases outside the evaluation lexicon (0 for the bundled samples)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = write_corpus(args.out, n_videos=args.videos, seed=args.seed, paraphrase_rate=args.paraphrase_rate)
    log.info("wrote %s to %s", counts, args.out)


if __name__ == "__main__":
    main()
