# Multi-stage build of static binaries on a minimal non-root base.
# (No Docker engine runs on the project's CI machines; scripts/build is the
# native equivalent and is what CI exercises.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/elemental-operator/elemental-operator/pkg/version.Version=${VERSION}" \
      -o /out/elemental-operator .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/elemental-operator /usr/bin/elemental-operator
USER 65532:65532
ENTRYPOINT ["/usr/bin/elemental-operator"]
