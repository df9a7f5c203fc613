#!/usr/bin/env bash
# Download the Freiburg Groceries Dataset (25 classes, ~5000 photos of packaged groceries in
# stores and apartments) from its official source, the University of Freiburg AIS dataset
# server, and lay it out as a folder-per-class tree shelfscan reads directly:
#
#   scripts/download-freiburg.sh [DEST]          # default DEST: data/freiburg_groceries
#   shelfscan-train DEST --out runs/freiburg ...  # the trainer splits it by file-name hash
#   make demo DATA=DEST                           # the demo on real photos
#
# Cite: P. Jund, N. Abdo, A. Eitel, W. Burgard. The Freiburg Groceries Dataset.
# arXiv:1611.05799, 2016. No license is stated: research / non-commercial use.
set -euo pipefail

URL="${FREIBURG_URL:-http://aisdatasets.informatik.uni-freiburg.de/freiburg_groceries_dataset/freiburg_groceries_dataset.tar.gz}"
DEST="${1:-data/freiburg_groceries}"

if [ -d "$DEST" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then
  echo "$DEST exists and is not empty: nothing to do (remove it to download again)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $URL"
if command -v curl >/dev/null; then
  curl -fL --retry 3 --progress-bar -o "$tmp/freiburg.tar.gz" "$URL"
else
  wget -q --show-progress -O "$tmp/freiburg.tar.gz" "$URL"
fi
echo "extracting"
tar -xzf "$tmp/freiburg.tar.gz" -C "$tmp"

# The archive holds images/<CLASS>/<CLASS>NNNN.png; class folders become lower-case labels.
src="$(find "$tmp" -type d -name images | head -n 1)"
if [ -z "$src" ]; then
  echo "error: no images/ folder in the archive (layout changed?): see $URL" >&2
  exit 1
fi
mkdir -p "$DEST"
for dir in "$src"/*/; do
  name="$(basename "$dir" | tr '[:upper:]' '[:lower:]')"
  mkdir -p "$DEST/$name"
  find "$dir" -maxdepth 1 -type f -iname '*.png' -exec mv -t "$DEST/$name" {} +
done
classes=$(find "$DEST" -mindepth 1 -maxdepth 1 -type d | wc -l)
images=$(find "$DEST" -type f -iname '*.png' | wc -l)
echo "done: $images images in $classes classes under $DEST"
