"""Versioned API models of the custom resources (group ``continuous.afs.dev``)."""
