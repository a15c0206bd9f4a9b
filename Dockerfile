# llseg image for KubeEdge Sedna lifelong-learning workers (llseg sedna train|eval|infer) and llseg itself.
#
#   mkdir -p wheels && cp /path/to/sedna-0.6.0.1-py3-none-any.whl wheels/    # KubeEdge Sedna is not on PyPI (docs/sedna.md)
#   docker build -t llseg-sedna:cpu .                                        # CPU-only torch (small image)
#   docker build --build-arg TORCH_VARIANT=cuda -t llseg-sedna:cuda .         # CUDA torch from PyPI (needs the NVIDIA driver on the node)
#
# No secrets are baked in; the workers run as the unprivileged user "llseg" (uid 1000).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# cpu: torch from PyTorch's CPU wheel index; cuda: torch from PyPI (CUDA wheels, run on CPU too)
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/llseg
COPY requirements/constraints.txt requirements/constraints.txt

# torch first (the largest layer, reused while llseg changes); versions from the constraints file
RUN set -eu; \
    case "$TORCH_VARIANT" in \
      cpu)  pip install -c requirements/constraints.txt --index-url "$TORCH_CPU_INDEX" torch torchvision ;; \
      cuda) pip install -c requirements/constraints.txt torch torchvision ;; \
      *)    echo "TORCH_VARIANT must be cpu or cuda, got $TORCH_VARIANT" >&2; exit 1 ;; \
    esac

# KubeEdge Sedna from the wheel you put in ./wheels (see the header); scikit-learn is what its evaluate imports
COPY wheels/ /tmp/wheels/
RUN set -eu; \
    ls /tmp/wheels/sedna-*.whl >/dev/null 2>&1 || { echo "put the KubeEdge Sedna wheel (sedna-*.whl) into ./wheels" >&2; exit 1; }; \
    pip install -c requirements/constraints.txt /tmp/wheels/sedna-*.whl scikit-learn; \
    rm -rf /tmp/wheels

COPY pyproject.toml README.md ./
COPY llseg/ llseg/
RUN pip install -c requirements/constraints.txt ".[onnx]" \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin llseg
USER 1000:1000
WORKDIR /home/llseg
# decoded-image cache and Sedna's defaults stay in writable places of the unprivileged user
ENV LLSEG_CACHE_DIR=/tmp/llseg-cache \
    BACKEND_TYPE=PYTORCH

ENTRYPOINT ["llseg"]
CMD ["--help"]
