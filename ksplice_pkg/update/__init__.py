"""Stage 6, the update: its manifest assembled from what the stages found (assemble). The
format it is written in, manifest.json (ksplice_pkg/manifest.py) inside ksplice-<id>.tar.gz
(ksplice_pkg/tarball.py), is shared with the runtime side."""
