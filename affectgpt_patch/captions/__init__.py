"""AU as text: one caption per video, placed as a sentence in AffectGPT's prompt (the text route)."""
