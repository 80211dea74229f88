#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_throughput.py on a GPU machine that cannot reach PyPI but
# already has PyTorch, CUDA, numpy, pandas, pyarrow, tokenizers, accelerate and huggingface_hub
# (the shape of this project's lent H100/H200 machines, Python 3.12).
#
# It fetches, into ./.whl (git-ignored), the packages gridlab's worker needs beyond those, at
# the versions installed in .venv here, so the GPU run uses the code these versions were
# tested with. On the GPU machine:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 -m benchmarks.gpu_throughput --out results.json
#
# Usage: bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
py_version="${1:-3.12}"
venv_python=.venv/bin/python
[ -x "$venv_python" ] || { echo "gpu_wheels: no .venv here; run 'make setup' first" >&2; exit 2; }

packages=(transformers peft datasets dill multiprocess sqlalchemy alembic mako)
pins=()
for name in "${packages[@]}"; do
  version=$("$venv_python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") \
    || { echo "gpu_wheels: $name is not installed in .venv" >&2; exit 2; }
  pins+=("$name==$version")
done

rm -rf .whl && mkdir -p .whl
"$venv_python" -m pip download --quiet --no-deps --only-binary=:all: -d .whl \
  --python-version "$py_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "${pins[@]}"
echo "gpu_wheels: $(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl for Python $py_version:"
ls .whl
