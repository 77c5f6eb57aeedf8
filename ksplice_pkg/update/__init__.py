"""Stage 6, the update: its manifest assembled from what the stages found (assemble), and
ksplice-<id>.tar.gz written (tarball). The manifest's format is ksplice_pkg/manifest.py, shared
with the runtime side."""
