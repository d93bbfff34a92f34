# Multi-stage build: the operator static (CGO off) on a minimal non-root base;
# elemental-register with cgo, since TPM authentication needs the cgo TPM stack.
# No Docker engine runs on the project's CI machines: scripts/build is the
# native equivalent and is what CI exercises.
#
#   docker build --build-arg VERSION=$(scripts/version) -t rancher/elemental-operator:$(scripts/version) .
#   docker build --target register -t rancher/elemental-register:$(scripts/version) .
FROM golang:1.26 AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN LDFLAGS="-s -w -X github.com/elemental-operator/elemental-operator/pkg/version.Version=${VERSION}" && \
    mkdir -p /out && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/elemental-operator . && \
    CGO_ENABLED=1 go build -trimpath -ldflags "$LDFLAGS" -o /out/elemental-register ./cmd/elemental-register

# The host-side client alone (for building OS images that register). Dynamic
# (glibc, libcrypto): distroless/base carries both.
FROM gcr.io/distroless/base-debian12:nonroot AS register
COPY --from=build /out/elemental-register /usr/bin/elemental-register
USER 65532:65532
ENTRYPOINT ["/usr/bin/elemental-register"]

# Default target: the operator (the chart runs it as 65532, read-only root).
FROM gcr.io/distroless/static:nonroot AS operator
COPY --from=build /out/elemental-operator /usr/bin/elemental-operator
USER 65532:65532
EXPOSE 8080 8443 9440
ENTRYPOINT ["/usr/bin/elemental-operator"]
