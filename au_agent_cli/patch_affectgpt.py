"""``au-agent patch-affectgpt``: add the AU modality to an AffectGPT checkout (``affectgpt_patch.patcher``)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .options import Handler

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("path", type=Path, help="the AffectGPT checkout (code under AffectGPT/ or at its root)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show what would change (a diff); write nothing")
    mode.add_argument("--check", action="store_true",
                      help="report each edit's state; exit status 0 only when every edit is applied")
    mode.add_argument("--revert", action="store_true", help="restore every patched file byte for byte")
    g = p.add_argument_group("generated configs",
                             "train_configs/config_with_au_agent.yaml and inference_config_au_agent.yaml")
    g.add_argument("--face-or-frame", help="AU mode (default multiface_audio_face_frame_au_text)")
    g.add_argument("--base-config", help="training config to start from (default: the checkout's released one)")
    g.add_argument("--agent", help="agent folder written by `au-agent train` (au_agent_dir)")
    g.add_argument("--openface-dir", help="OpenFace CSVs {video}.csv (openface_output_dir)")
    g.add_argument("--precomputed-dir", help="`au-agent precompute` output (au_precomputed_dir)")
    g.add_argument("--mer-factory-output", help="per-frame MER-Factory output, for use_au_agent: false")
    g.add_argument("--captions", help="`au-agent captions` output: nonverbal_json of the AU fork's Nonverbal mode")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.patcher import ConfigOptions, apply_patch, check_patch, revert_patch

        if a.revert:
            restored = revert_patch(a.path)
            sys.stdout.write("".join(f"restored {rel}\n" for rel in restored))
            return 0
        if a.check:
            report = check_patch(a.path)
            sys.stdout.write(report.format() + "\n")
            return 0 if report.complete else 1
        options = ConfigOptions(face_or_frame=a.face_or_frame, base_config=a.base_config, agent_dir=a.agent,
                                openface_dir=a.openface_dir, mer_factory_output=a.mer_factory_output,
                                precomputed_dir=a.precomputed_dir, captions_file=a.captions)
        report = apply_patch(a.path, options, dry_run=a.dry_run)
        sys.stdout.write(report.format() + "\n" + report.diff)
        if not a.dry_run:
            log.info("%d files written%s", len(report.changed), "" if report.changed else " (already patched)")
        return 0

    return run
