# nsa_fast GPU image.
#   docker build -t nsa_fast .                              # default: CUDA 12.6, runs on Pascal (GTX 1080) and newer
#   docker build --build-arg STACK=cuda13 -t nsa_fast:cuda13 .   # CUDA 13: Turing and newer only
#   docker run --gpus all -v /data/mvtec:/data:ro -v nsa-cache:/cache -v "$PWD/runs:/workspace/runs" \
#       nsa_fast --data /data --category bottle --gpu-blend
# Pins live in docker/requirements-*.txt; the torch pins equal pyproject.toml's upper bounds
# (tests/test_docker.py checks both).
ARG STACK=pascal

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS stack-pascal
ENV TORCH_INDEX=https://download.pytorch.org/whl/cu126 \
    STACK_REQUIREMENTS=requirements-pascal.txt

FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04 AS stack-cuda13
ENV TORCH_INDEX=https://pypi.org/simple \
    STACK_REQUIREMENTS=requirements-cuda13.txt

# hadolint ignore=DL3006
FROM stack-${STACK} AS image
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu's python3 is the interpreter; its package versions follow the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1
COPY docker/requirements-*.txt /opt/requirements/
RUN pip install --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple \
        -r "/opt/requirements/$STACK_REQUIREMENTS" -r /opt/requirements/requirements-common.txt
COPY pyproject.toml README.md LICENSE /src/
COPY nsa_fast /src/nsa_fast
COPY kernels /src/kernels
# --no-deps: every dependency is pinned above; the CUDA sources go to /opt/venv/share/nsa_fast/kernels
RUN pip install --no-deps /src && rm -rf /src

# An unprivileged user; CuPy's compiled kernels and the demo data persist on the /cache volume.
RUN useradd --create-home --uid 1000 nsa \
    && mkdir -p /cache /workspace \
    && chown nsa:nsa /cache /workspace
ENV CUPY_CACHE_DIR=/cache/cupy \
    NSA_FAST_CACHE=/cache/nsa_fast
VOLUME ["/cache"]
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "nsa_fast.train"]
CMD ["--help"]
