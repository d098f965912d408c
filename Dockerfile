# syntax=docker/dockerfile:1.7
#
# One image for every onestop process. The console script `onestop` is the entrypoint:
#   docker run IMAGE service intake      (or routing, approval, supervision, notification, gateway)
#   docker run IMAGE migrate --all       (the migrations Job)
#
# Stage 1 builds a wheel of the project and installs it with its dependencies into a virtualenv;
# stage 2 copies only that virtualenv onto a fresh slim base and runs as uid 10001.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/onestop \
 && /opt/onestop/bin/pip install --upgrade pip setuptools wheel
COPY . /src
# The protobuf stubs are committed beside the .proto files (protos/onestop/<area>/v1) and are
# packaged as `onestop.*`. Regenerating them here with the pinned grpcio-tools (pyproject.toml) keeps the
# image consistent even if a commit forgot to regenerate; the stale-stubs test catches that in CI.
RUN /opt/onestop/bin/pip install "grpcio-tools==1.85.1" \
 && find protos -name '*.proto' -print0 \
    | xargs -0 -r /opt/onestop/bin/python -m grpc_tools.protoc -I protos \
        --python_out=protos --grpc_python_out=protos
RUN /opt/onestop/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/onestop/bin/pip install /wheels/onestop-*.whl \
 && /opt/onestop/bin/python -m compileall -q /opt/onestop/lib
# Fail the build, not the first request, when the package or its stubs are missing.
RUN cd / && /opt/onestop/bin/python - <<'PY'
import importlib, pathlib
import services.cli.main  # noqa: F401  (the `onestop` entrypoint)
protos = sorted(pathlib.Path("/src/protos").rglob("*.proto"))
for proto in protos:
    module = ".".join(proto.relative_to("/src/protos").with_suffix("").parts) + "_pb2"
    importlib.import_module(module)
print(f"onestop installed; {len(protos)} protobuf modules import")
PY

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="onestop" \
      org.opencontainers.image.description="Administrative service centers: intake, routing, approval, supervision, notification, gateway"
RUN groupadd --system --gid 10001 onestop \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin onestop \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/onestop/data
COPY --from=builder /opt/onestop /opt/onestop
ENV PATH=/opt/onestop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ONESTOP_LOG_FORMAT=json \
    ONESTOP_DATA_DIR=/var/lib/onestop/data
WORKDIR /var/lib/onestop
USER 10001:10001
# gRPC services 50051-50055, interconnect (intake) 50060, gateway HTTP 8080, metrics 9090.
EXPOSE 50051 50052 50053 50054 50055 50060 8080 9090
ENTRYPOINT ["onestop"]
CMD ["service", "gateway"]
