"""AU features: OpenFace frames → agent descriptions → CLIP text features, per video and per corpus."""
