# nsa_fast GPU image.
#   docker build -t nsa_fast .                              # default: CUDA 12.6, runs on Pascal (GTX 1080) and newer
#   docker build --build-arg STACK=cuda13 -t nsa_fast:cuda13 .   # CUDA 13: Turing and newer only
#   docker run --gpus all -v /data/mvtec:/data:ro -v nsa-cache:/cache -v "$PWD/runs:/workspace/runs" \
#       nsa_fast --data /data --category bottle --gpu-blend
# Pins live in docker/requirements-*.txt; they meet pyproject.toml's floors, and the Pascal image
# pins the last torch line with CUDA 12.6 wheels and cuDNN 9.10 (tests/test_docker.py checks both).
ARG STACK=pascal

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS stack-pascal
# TORCH_ARCH_REQUIRED: the build fails unless torch has kernels for it (sm_60 runs on the GTX 1080).
# CUDNN_BELOW: the build fails unless torch loads a cuDNN older than 9.11 (9.10 is the last line
# with Pascal kernels).
ENV TORCH_INDEX=https://download.pytorch.org/whl/cu126 \
    STACK_REQUIREMENTS=requirements-pascal.txt \
    TORCH_ARCH_REQUIRED=sm_60 \
    CUDNN_BELOW=91100

FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04 AS stack-cuda13
ENV TORCH_INDEX=https://pypi.org/simple \
    STACK_REQUIREMENTS=requirements-cuda13.txt \
    TORCH_ARCH_REQUIRED=sm_75 \
    CUDNN_BELOW=999999

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
# pip may resolve a pin to a torch of another CUDA without a word (PyPI's plain torch is a CUDA 13
# build with no Pascal code), so check the kernels the installed torch was compiled for. The list
# is read from torch._C._cuda_getArchFlags(), the flags compiled into the build: no GPU is visible
# during docker build, and torch.cuda.get_arch_list() returns [] without one in releases that check
# torch.cuda.is_available() first (2.14 checks only that torch was built with CUDA). A RUN of its
# own, so that a failure points at this check rather than at pip.
# hadolint ignore=DL3059
RUN python -c 'import os, sys, torch; \
need = os.environ["TORCH_ARCH_REQUIRED"]; \
flags = (getattr(torch._C, "_cuda_getArchFlags", lambda: None)() or "").split(); \
need in flags or sys.exit("torch " + torch.__version__ + " (CUDA " + str(torch.version.cuda) + ") has no " + need + " kernels, only: " + (" ".join(flags) or "none, a CPU build") + ". Expected the wheel of " + os.environ["TORCH_INDEX"] + ": pin torch with its +cuXXX tag in docker/" + os.environ["STACK_REQUIREMENTS"] + " and make the other pins agree with what that wheel requires."); \
print("torch", torch.__version__, "CUDA", torch.version.cuda, "kernels:", " ".join(flags))'
# The cuDNN torch loads (read from the library, no GPU needed): a cuDNN without kernels for the
# stack's oldest GPU builds fine and then fails every convolution at run time.
# hadolint ignore=DL3059
RUN python -c 'import os, sys, torch; \
below = int(os.environ["CUDNN_BELOW"]); \
v = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None; \
v is not None and v < below or sys.exit("torch " + torch.__version__ + " loads cuDNN " + str(v) + "; this image needs a cuDNN below " + str(below) + " (9.10 is the last line for Maxwell, Pascal and Volta): pin nvidia-cudnn-cu12 in docker/" + os.environ["STACK_REQUIREMENTS"] + " to a 9.10 release that torch accepts."); \
print("cuDNN", v)'
COPY pyproject.toml README.md LICENSE /src/
COPY nsa_fast /src/nsa_fast
COPY kernels /src/kernels
# --no-deps: every dependency is pinned above; the CUDA sources go to /opt/venv/share/nsa_fast/kernels
RUN pip install --no-deps /src && rm -rf /src

# An unprivileged user at uid/gid 1000, which ubuntu:24.04 gives to its own user `ubuntu` (the script
# makes room); CuPy's compiled kernels and the demo data persist on the /cache volume.
COPY docker/create-user.sh /tmp/create-user.sh
RUN sh /tmp/create-user.sh nsa 1000 /cache /workspace && rm /tmp/create-user.sh
ENV CUPY_CACHE_DIR=/cache/cupy \
    NSA_FAST_CACHE=/cache/nsa_fast
VOLUME ["/cache"]
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "nsa_fast.train"]
CMD ["--help"]
