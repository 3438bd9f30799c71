"""Engines that run the pipeline on many machines (Ray)."""
