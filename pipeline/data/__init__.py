"""Data for the cascade's stages: loading sources, formatting rows, and the builtin synthetic tasks."""
