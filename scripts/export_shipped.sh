#!/usr/bin/env bash
# Export a training run as one of the shipped models, with its description, data and licence in the metadata.
#   scripts/export_shipped.sh cxr-fidelity runs/fid [best.pt|last.pt]
#   scripts/export_shipped.sh cxr-gan runs/gan last.pt
#   scripts/export_shipped.sh cxr-fidelity runs/fid best.pt --blend-with cxr-fidelity --blend 0.5
# Arguments after the checkpoint go to cxrsr export-weights as they are.
set -euo pipefail
name=$1 run=$2 checkpoint=${3:-best.pt}
shift $(( $# < 3 ? $# : 3 ))
case $name in
  cxr-fidelity) description="Swift-SRGAN 4x fine-tuned on chest X-rays for pixel fidelity (MSE): the default model" ;;
  cxr-gan) description="Swift-SRGAN 4x, cxr-fidelity fine-tuned adversarially (the seed paper's perceptual + adversarial recipe): sharper texture, may invent detail" ;;
  *) echo "unknown shipped name $name" >&2; exit 2 ;;
esac
cxrsr export-weights "$run" --checkpoint "$checkpoint" -o "src/cxrsr/weights/files/$name.safetensors" --overwrite \
  --meta name="$name" --meta description="$description" \
  --meta data="NIH ChestX-ray14 (Wang et al., CVPR 2017; NIH Clinical Center, unrestricted use), 480 training images; initial weights: Swift-SRGAN 4x (Krishnan & Krishnan, DIV2K + Flickr2K, CC0-1.0)" \
  --meta license="MIT" --meta intended_use="research and visualisation; not for diagnosis" "$@"
