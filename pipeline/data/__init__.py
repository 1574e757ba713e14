"""Rows in and out: sources, chat shapes, dedup, decontamination, seeds, training sets, privacy."""
