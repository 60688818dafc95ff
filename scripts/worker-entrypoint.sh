#!/bin/sh
# Entry point of the worker image. The image carries the default face detector, fetched at build
# into IMAGE_WEIGHTS_DIR; a deployment mounts its own checkpoints (the seed models, perhaps a detector)
# read-only at WEIGHTS_DIR. The engine reads one folder, so both are linked into one writable folder,
# the mounted files winning a name clash, and WEIGHTS_DIR points there. A mount with only the seed
# checkpoints therefore still gets RetinaFace rather than the Haar fallback.
set -eu
image_dir=${IMAGE_WEIGHTS_DIR:-/opt/deepfake/weights}
merged=${WEIGHTS_LINK_DIR:-/var/lib/deepfake/weights}
mounted=${WEIGHTS_DIR:-/weights}
if [ "$mounted" != "$merged" ]; then
  find "$merged" -mindepth 1 -maxdepth 1 -type l -delete
  for dir in "$image_dir" "$mounted"; do
    [ -d "$dir" ] || continue
    for file in "$dir"/*; do
      if [ -f "$file" ]; then
        ln -sfn "$file" "$merged/${file##*/}"
      fi
    done
  done
  export WEIGHTS_DIR="$merged"
fi
exec "$@"
