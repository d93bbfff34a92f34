# Multi-stage build: static binaries (CGO off) on a minimal non-root base.
# No Docker engine runs on the project's CI machines: scripts/build is the
# native equivalent and is what CI exercises.
#
#   docker build --build-arg VERSION=$(scripts/version) -t rancher/elemental-operator:$(scripts/version) .
#   docker build --target register -t rancher/elemental-register:$(scripts/version) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
RUN LDFLAGS="-s -w -X github.com/elemental-operator/elemental-operator/pkg/version.Version=${VERSION}" && \
    mkdir -p /out && \
    go build -trimpath -ldflags "$LDFLAGS" -o /out/elemental-operator . && \
    if [ -d cmd/elemental-register ]; then \
      go build -trimpath -ldflags "$LDFLAGS" -o /out/elemental-register ./cmd/elemental-register; \
    fi

# The host-side client alone (for building OS images that register).
FROM gcr.io/distroless/static:nonroot AS register
COPY --from=build /out/ /usr/bin/
USER 65532:65532
ENTRYPOINT ["/usr/bin/elemental-register"]

# Default target: the operator (the chart runs it as 65532, read-only root).
FROM gcr.io/distroless/static:nonroot AS operator
COPY --from=build /out/elemental-operator /usr/bin/elemental-operator
USER 65532:65532
EXPOSE 8080 8443 9440
ENTRYPOINT ["/usr/bin/elemental-operator"]
