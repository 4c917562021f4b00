"""Attribute transfer from a reference face along the face mesh (``filter``; after GeoGAN)."""
